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
    return load_adapter(resolve_pretrained(cfg.pretrained), family=cfg.family, **kwargs)
