"""Tiny random-init diffusers pipelines of each real family architecture, for tests.

``build_tiny_pipeline("sd")`` returns a real ``StableDiffusionPipeline`` (and likewise ``sdxl``,
``sd3``, ``cogvideox``) with tiny components and offline tokenizers; nothing touches the network.
"""
from __future__ import annotations

import importlib

_BUILDERS = {
    "sd": "diffalign.pipelines.tiny.sd:build",
    "sdxl": "diffalign.pipelines.tiny.sdxl:build",
    "sd3": "diffalign.pipelines.tiny.sd3:build",
    "cogvideox": "diffalign.pipelines.tiny.cogvideox:build",
    "flux": "diffalign.pipelines.tiny.flux:build",
    "wan": "diffalign.pipelines.tiny.wan:build",
    "qwenimage": "diffalign.pipelines.tiny.qwenimage:build",
    "flux2": "diffalign.pipelines.tiny.flux2:build",
    "zimage": "diffalign.pipelines.tiny.zimage:build",
    "hunyuanvideo15": "diffalign.pipelines.tiny.hunyuanvideo15:build",
    "ltx2": "diffalign.pipelines.tiny.ltx2:build",
}


def build_tiny_pipeline(family: str, seed: int = 0, **overrides):
    """A tiny random-init pipeline of ``family`` (deterministic for a given seed)."""
    if family not in _BUILDERS:
        raise KeyError(f"no tiny builder for family {family!r}; known: {', '.join(sorted(_BUILDERS))}")
    module, _, fn = _BUILDERS[family].partition(":")
    return getattr(importlib.import_module(module), fn)(seed=seed, **overrides)


def build_tiny_adapter(family: str, seed: int = 0, **overrides):
    """The tiny pipeline of ``family`` wrapped in its adapter."""
    from diffalign.pipelines import get_adapter_class

    return get_adapter_class(family)(build_tiny_pipeline(family, seed=seed, **overrides))


__all__ = ["build_tiny_pipeline", "build_tiny_adapter"]
