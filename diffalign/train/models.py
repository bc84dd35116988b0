"""Turning a :class:`ModelConfig` into a loaded model adapter."""
from __future__ import annotations

import torch

from diffalign.pipelines import PipelineAdapter, load_adapter
from diffalign.train.config import ModelConfig

#: names that resolve to the pipelines embedded in the package.
EMBEDDED = {"shapes-sd": "sd", "shapes-sd3": "sd3"}


def resolve_pretrained(name: str) -> str:
    """``shapes-sd`` / ``shapes-sd3`` -> the embedded folder; anything else is a hub id or a path."""
    if name in EMBEDDED:
        from diffalign.shapes import pretrained_path

        return pretrained_path(EMBEDDED[name])
    return name


def load_model(cfg: ModelConfig, device="cpu", dtype: torch.dtype = torch.float32) -> PipelineAdapter:
    kwargs = {"torch_dtype": dtype, "device": device}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    if cfg.variant:
        kwargs["variant"] = cfg.variant
    adapter = load_adapter(resolve_pretrained(cfg.pretrained), family=cfg.family, **kwargs)
    if cfg.channels_last:
        use_channels_last(adapter.pipe)
    return adapter


def use_channels_last(pipe) -> None:
    """Put a pipeline's convolutional networks (UNet, VAE) in channels-last memory format; the
    outputs are the same, convolutions run faster (a transformer denoiser is left as it is)."""
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            module.to(memory_format=torch.channels_last)
