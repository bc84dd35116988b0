"""One plain line saying what runs in which precision, printed when a run asks for reduced precision.

accelerate's ``mixed_precision=fp16`` has no autocast on CPU (it silently runs fp32 there), while
``bf16`` autocasts on CPU and GPU; ``model.weight_dtype`` sets the frozen weights' dtype (fp16
weights do run on CPU, slowly, whatever diffusers' pipeline warning says). Trainable weights
(the LoRA, or the whole network when fully fine-tuned) and every loss computation stay fp32.
"""
from __future__ import annotations


def precision_line(device_type: str, weight_dtype: str, mixed_precision: str, autocast_active: bool) -> str:
    """``device_type``: ``cpu`` / ``cuda`` ...; ``weight_dtype``: fp32 | fp16 | bf16; ``mixed_precision``:
    no | fp16 | bf16 (accelerate's); ``autocast_active``: whether accelerate autocasts the forward."""
    if mixed_precision == "no":
        autocast = "no autocast"
    elif autocast_active:
        autocast = f"forward passes under {mixed_precision} autocast"
    else:
        autocast = (f"no autocast: mixed_precision={mixed_precision} has no autocast on {device_type}, "
                    "forward passes run in the weights' dtypes")
    return (f"precision on {device_type}: frozen weights {weight_dtype}; trainable weights and loss fp32; {autocast}")


def describe_precision(accelerator, weight_dtype: str) -> str | None:
    """The line for this run, or None when everything runs in fp32 (nothing to say)."""
    mixed = str(accelerator.mixed_precision)
    if mixed == "no" and weight_dtype == "fp32":
        return None
    active = mixed != "no" and (bool(getattr(accelerator, "native_amp", False)) or accelerator.device.type != "cpu")
    return precision_line(accelerator.device.type, weight_dtype, mixed, active)
