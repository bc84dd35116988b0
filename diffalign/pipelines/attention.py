"""Attention kernel selection for diffusers denoisers: ``sdpa`` (default), ``xformers``, ``flash``.

diffusers has two kinds of attention processors, and the right switch depends on which a model uses:

- *dispatching* processors (they carry ``_attention_backend``; newer transformer models) route through
  ``diffusers.models.attention_dispatch``: ``ModelMixin.set_attention_backend`` picks the kernel;
- *classic* processors (``AttnProcessor2_0`` in ``UNet2DConditionModel``, ``JointAttnProcessor2_0``
  in ``SD3Transformer2DModel``, ``CogVideoXAttnProcessor2_0`` ...) call
  ``torch.nn.functional.scaled_dot_product_attention`` directly. For them ``xformers`` swaps in
  diffusers' xFormers processors where an exact equivalent exists (plain and joint attention), and
  ``flash`` restricts PyTorch SDPA to its FlashAttention kernel around every attention call
  (``torch.nn.attention.sdpa_kernel``; it needs fp16/bf16 inputs on a CUDA GPU).

``sdpa`` restores what the model had when it was built (PyTorch SDPA with automatic kernel choice).
"""
from __future__ import annotations

import importlib.util
import weakref
from typing import Any

import torch

BACKENDS = ("sdpa", "xformers", "flash")

# model -> {"backend": str, "processors": {module: processor} | None, "hooks": [handles], "dispatch": bool}
_STATE: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, Any]]" = weakref.WeakKeyDictionary()


def set_attention_backend(model: torch.nn.Module, name: str = "sdpa") -> None:
    """Make every attention layer of ``model`` use the ``name`` kernel (see module docstring).

    Raises ``ValueError`` for an unknown name (or a model whose processors have no such variant),
    ``ImportError`` when the backend's package is missing and ``RuntimeError`` without CUDA.
    """
    key = str(name).lower()
    if key not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
    layers = _attention_layers(model)
    dispatching = bool(layers) and all(hasattr(m.processor, "_attention_backend") for m in layers)
    _check_available(key, dispatching)
    restore_default_attention(model)
    if key == "sdpa" or not layers:
        return
    state: dict[str, Any] = {"backend": key, "processors": None, "hooks": [], "dispatch": False}
    if dispatching:
        model.set_attention_backend(key)
        state["dispatch"] = True
    elif key == "xformers":
        state["processors"] = _use_xformers_processors(model, layers)
    else:
        state["hooks"] = _force_sdpa_kernel(layers, _flash_kernel())
    _STATE[model] = state


def current_attention_backend(model: torch.nn.Module) -> str:
    """The backend last selected with :func:`set_attention_backend` (``"sdpa"`` by default)."""
    return _STATE.get(model, {}).get("backend", "sdpa")


def restore_default_attention(model: torch.nn.Module) -> None:
    """Undo :func:`set_attention_backend`: original processors, no kernel hooks, no dispatch backend."""
    state = _STATE.pop(model, None)
    if state is None:
        return
    for handle in state["hooks"]:
        handle.remove()
    if state["processors"]:
        for module, processor in state["processors"].items():
            module.set_processor(processor)
    if state["dispatch"]:
        model.reset_attention_backend()


# ---------------------------------------------------------------------------------------------- helpers
def _attention_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if hasattr(m, "set_processor") and getattr(m, "processor", None) is not None]


def _check_available(key: str, dispatching: bool) -> None:
    if key == "xformers" and importlib.util.find_spec("xformers") is None:
        raise ImportError(
            "attention backend 'xformers' needs the xformers package, which is not installed; "
            "install it with `pip install diffalign[cuda]` (or use 'sdpa')"
        )
    if key == "flash" and dispatching and importlib.util.find_spec("flash_attn") is None:
        raise ImportError(
            "attention backend 'flash' needs the flash-attn package for this model, which is not installed; "
            "install it with `pip install flash-attn --no-build-isolation` (or use 'sdpa')"
        )
    if key in ("xformers", "flash") and not torch.cuda.is_available():
        raise RuntimeError(f"attention backend {key!r} runs on CUDA GPUs only and no GPU is visible; use 'sdpa'")


def _use_xformers_processors(model: torch.nn.Module, layers: list[torch.nn.Module]) -> dict:
    """Swap classic processors for diffusers' xFormers ones (only where an exact variant exists)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0, JointAttnProcessor2_0

    supported = (AttnProcessor, AttnProcessor2_0, JointAttnProcessor2_0)
    unsupported = sorted({type(m.processor).__name__ for m in layers if not isinstance(m.processor, supported)})
    if unsupported:
        raise ValueError(
            f"{type(model).__name__} uses attention processors {unsupported} that have no xFormers variant in "
            "diffusers; use 'sdpa' or 'flash' for this model"
        )
    originals = {m: m.processor for m in layers}
    try:
        model.enable_xformers_memory_efficient_attention()
    except Exception:
        for module, processor in originals.items():
            module.set_processor(processor)
        raise
    return originals


def _flash_kernel():
    from torch.nn.attention import SDPBackend

    return SDPBackend.FLASH_ATTENTION


def _force_sdpa_kernel(layers: list[torch.nn.Module], kernel) -> list:
    """Hook each attention layer so its SDPA calls use only ``kernel`` (also in checkpoint recompute,
    which re-enters the layer's ``__call__``)."""
    from torch.nn.attention import sdpa_kernel

    handles = []
    for layer in layers:
        active: list = []

        def enter(module, args, _active=active):
            ctx = sdpa_kernel([kernel])
            ctx.__enter__()
            _active.append(ctx)

        def leave(module, args, output, _active=active):
            if _active:
                _active.pop().__exit__(None, None, None)

        handles.append(layer.register_forward_pre_hook(enter))
        handles.append(layer.register_forward_hook(leave, always_call=True))
    return handles


__all__ = ["BACKENDS", "current_attention_backend", "restore_default_attention", "set_attention_backend"]
