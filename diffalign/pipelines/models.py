"""The model section of a config (:class:`ModelConfig`) and turning it into a loaded adapter.

Pipelines shipped inside the package (the shapes world's ``shapes-sd`` and ``shapes-sd3``) live in
``diffalign/pretrained/<name>`` and are addressed by name wherever a hub id or a folder is accepted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

from diffalign.config import apply_parsers, choice, parsed
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
    #: model family (``sd``, ``sdxl``, ``sd3``, ``flux``, ``qwenimage``, ``cogvideox``, ``wan``); detected from model_index.json if unset.
    family: Optional[str] = choice(None, FAMILIES.names)
    revision: Optional[str] = None
    variant: Optional[str] = None
    #: dtype of the frozen weights (VAE, text encoders, base network): fp32 | fp16 | bf16 (or
    #: float32 | float16 | bfloat16).
    weight_dtype: str = parsed("fp32", dtype_name)
    #: attention kernel: sdpa | xformers | flash.
    attention: str = choice("sdpa", BACKENDS)
    gradient_checkpointing: bool = False
    #: channels-last memory format for the convolutional networks (UNet, VAE): same results, faster
    #: convolutions on CPU (oneDNN; ~20 % on the shapes pipelines) and on recent GPUs.
    channels_last: bool = False
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
    adapter = load_adapter(resolve_pretrained(cfg.pretrained), family=cfg.family, **kwargs)
    if cfg.channels_last:
        use_channels_last(adapter.pipe)
    use_vae_memory_switches(adapter.pipe, tiling=cfg.vae_tiling, slicing=cfg.vae_slicing)
    return adapter


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
