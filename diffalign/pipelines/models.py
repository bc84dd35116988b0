"""The model section of a config (:class:`ModelConfig`) and turning it into a loaded adapter.

Pipelines shipped inside the package (the shapes world's ``shapes-sd`` and ``shapes-sd3``) live in
``diffalign/pretrained/<name>`` and are addressed by name wherever a hub id or a folder is accepted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import torch

from diffalign.config import apply_parsers, bounded, choice, parsed
from diffalign.pipelines import FAMILIES, PipelineAdapter, load_adapter
from diffalign.pipelines.attention import BACKENDS
from diffalign.utils.dtypes import dtype_name

#: pipelines embedded in the package: name -> family.
EMBEDDED = {"shapes-sd": "sd", "shapes-sd3": "sd3", "shapes-cogvideox": "cogvideox"}
EMBEDDED_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")


@dataclass
class ModelConfig:
    #: hub id, local diffusers folder, or an embedded shapes pipeline: ``shapes-sd`` / ``shapes-sd3``.
    pretrained: str = "shapes-sd"
    #: model family (``sd``, ``sdxl``, ``sd3``, ``flux``, ``flux2``, ``qwenimage``, ``zimage``, ``cogvideox``, ``wan``); detected from model_index.json if unset.
    family: Optional[str] = choice(None, FAMILIES.names)
    revision: Optional[str] = None
    variant: Optional[str] = None
    #: dtype of the frozen weights (VAE, text encoders, base network): fp32 | fp16 | bf16 (or
    #: float32 | float16 | bfloat16).
    weight_dtype: str = parsed("fp32", dtype_name)
    #: attention kernel: sdpa | xformers | flash.
    attention: str = choice("sdpa", BACKENDS)
    gradient_checkpointing: bool = False
    #: selective checkpointing: only these denoiser sub-modules (dotted names, e.g. ``down_blocks.0``,
    #: ``up_blocks.3``: the highest-resolution UNet blocks, which hold most activations) recompute
    #: their activations in the backward; empty = as ``gradient_checkpointing`` says (all or none).
    checkpoint_blocks: list[str] = field(default_factory=list)
    #: channels-last memory format for the convolutional networks (UNet, VAE): same results, faster
    #: convolutions on CPU (oneDNN; ~20 % on the shapes pipelines) and on recent GPUs.
    channels_last: bool = False
    #: frozen base network quantized on load, LoRA trained on top (CUDA only): none | nf4 | int8
    #: (bitsandbytes) | fp8 (torchao).
    quantize: str = choice("none", ("none", "nf4", "int8", "fp8"))
    #: keep the frozen text encoders and VAE in CPU memory, each moved to the GPU only for its own
    #: forward (CUDA only): saves their GPU memory at the cost of a host-to-GPU copy per call.
    offload_frozen: bool = False
    #: ``torch.compile`` the denoiser's forward in place (one graph, no graph break, the reference
    #: pass with adapters off compiles once more; saved weights keep their names). Needs a C compiler
    #: on CPU; the first steps pay the compile time (minutes for SD-size networks).
    compile: bool = False
    #: guidance-distilled FLUX.1 (``flux``): the value fed to the transformer's guidance embedding in
    #: training and sampling (the pipeline's ``guidance_scale``); unset = the adapter's 3.5.
    embedded_guidance: Optional[float] = bounded(None, 0.0)
    #: FLUX.1 (``flux``): classifier-free guidance against the negative prompt (the pipeline's
    #: ``true_cfg_scale`` = the trainer's ``sampling.guidance_scale``); unset = off (guidance-distilled).
    true_cfg: Optional[bool] = None
    #: diffusers' VAE memory switches for decoding (and encoding) large images and videos:
    #: ``vae_tiling`` (``vae.enable_tiling()``: spatial tiles, blended) and ``vae_slicing``
    #: (``vae.enable_slicing()``: one sample of the batch at a time). Same results up to tile seams.
    vae_tiling: bool = False
    vae_slicing: bool = False

    def __post_init__(self) -> None:
        apply_parsers(self)


def embedded_path(name: str) -> str:
    """Folder of the embedded pipeline ``name`` (``shapes-sd`` / ``shapes-sd3``), loadable with
    ``DiffusionPipeline.from_pretrained``. Raises ``FileNotFoundError`` if it is absent."""
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded pipeline {name!r}; expected one of {', '.join(EMBEDDED)}")
    path = os.path.join(EMBEDDED_ROOT, name)
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise FileNotFoundError(
            f"pretrained shapes pipeline {name!r} not found at {path} (no model_index.json); "
            "it ships with the package; reinstall diffalign or train it with python -m diffalign.shapes.pretrain"
        )
    return path


def resolve_pretrained(name: str) -> str:
    """``shapes-sd`` / ``shapes-sd3`` -> the embedded folder; anything else is a hub id or a path."""
    return embedded_path(name) if name in EMBEDDED else name


def load_model(cfg: ModelConfig, device="cpu", dtype: torch.dtype = torch.float32) -> PipelineAdapter:
    kwargs = {"torch_dtype": dtype, "device": device}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    if cfg.variant:
        kwargs["variant"] = cfg.variant
    if cfg.quantize != "none":
        kwargs["quantization_config"] = quantization_config(cfg.quantize, device)
    adapter = load_adapter(resolve_pretrained(cfg.pretrained), family=cfg.family, **kwargs)
    if cfg.channels_last:
        use_channels_last(adapter.pipe)
    use_vae_memory_switches(adapter.pipe, tiling=cfg.vae_tiling, slicing=cfg.vae_slicing)
    return configure_adapter(adapter, cfg)


def configure_adapter(adapter: PipelineAdapter, cfg: ModelConfig) -> PipelineAdapter:
    """Apply the model section's family settings (``embedded_guidance``, ``true_cfg``) to ``adapter``;
    a setting the family does not have is a one-line ``ValueError``. Unset keys leave it as it is."""
    for key in ("embedded_guidance", "true_cfg"):
        value = getattr(cfg, key)
        if value is None:
            continue
        if not hasattr(adapter, key):
            raise ValueError(f"model.{key}: the {adapter.family} family has no {key} setting (FLUX.1, family flux, has)")
        setattr(adapter, key, float(value) if key == "embedded_guidance" else bool(value))
    return adapter


#: diffusers' quantization backends for ``model.quantize``.
QUANT_BACKENDS = {"nf4": ("bitsandbytes_4bit", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}),
                  "int8": ("bitsandbytes_8bit", {"load_in_8bit": True}),
                  "fp8": ("torchao", {"quant_type": "float8wo"})}


def quantization_config(kind: str, device):
    """diffusers' ``PipelineQuantizationConfig`` quantizing the denoiser (``unet`` / ``transformer``)."""
    if torch.device(device).type != "cuda":
        raise ValueError(f"model.quantize={kind} needs a CUDA GPU (bitsandbytes / torchao kernels); on "
                         f"{torch.device(device).type} set model.quantize=none (or model.weight_dtype=bf16 to halve memory)")
    from diffusers.quantizers import PipelineQuantizationConfig

    backend, options = QUANT_BACKENDS[kind]
    return PipelineQuantizationConfig(quant_backend=backend, quant_kwargs=options,
                                      components_to_quantize=["unet", "transformer"])


#: the frozen parts ``model.offload_frozen`` keeps in CPU memory.
OFFLOADED = ("text_encoder", "text_encoder_2", "text_encoder_3", "vae")


def offload_frozen(adapter: PipelineAdapter, device) -> list[str]:
    """Keep the pipeline's frozen text encoders and VAE on the CPU; a forward pre-hook moves each to
    ``device`` for its call and a forward hook moves it back (the denoiser stays on ``device``).
    Returns the offloaded component names."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"model.offload_frozen keeps frozen parts in CPU memory for a CUDA GPU; on {device.type} "
                         "they already are in that memory: set model.offload_frozen=false")
    names = []
    for name in OFFLOADED:
        module = getattr(adapter.pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        module.to("cpu")
        module.register_forward_pre_hook(lambda m, args: m.to(device) and None)
        module.register_forward_hook(lambda m, args, out: m.to("cpu") and None)
        names.append(name)
    return names


def use_vae_memory_switches(pipe, *, tiling: bool = False, slicing: bool = False) -> None:
    """Turn on the pipeline VAE's own tiling / slicing (``model.vae_tiling`` / ``model.vae_slicing``)."""
    vae = getattr(pipe, "vae", None)
    for wanted, switch, key in ((tiling, "enable_tiling", "model.vae_tiling"), (slicing, "enable_slicing", "model.vae_slicing")):
        if not wanted:
            continue
        if not callable(getattr(vae, switch, None)):
            raise ValueError(f"{key}: the VAE of this pipeline ({type(vae).__name__}) has no {switch}()")
        getattr(vae, switch)()


def use_channels_last(pipe) -> None:
    """Put a pipeline's convolutional networks (UNet, VAE) in channels-last memory format; the
    outputs are the same, convolutions run faster (a transformer denoiser is left as it is)."""
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            module.to(memory_format=torch.channels_last)
