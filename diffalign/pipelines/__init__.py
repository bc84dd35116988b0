"""Model-family adapters over the real diffusers pipeline classes.

``load_adapter("path/or/hub-id")`` picks the family from the folder's ``model_index.json``;
``load_adapter(path, family="sdxl")`` forces it. New families register with ``@register_adapter``.
"""
from __future__ import annotations

import importlib
from typing import Callable

from diffalign.pipelines.base import LORA_WEIGHT_NAME, PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds

# family name -> "module:Class", imported lazily so that loading one family never imports the others.
_ADAPTERS: dict[str, str | type[PipelineAdapter]] = {
    "sd": "diffalign.pipelines.sd:SDAdapter",
    "sdxl": "diffalign.pipelines.sdxl:SDXLAdapter",
    "sd3": "diffalign.pipelines.sd3:SD3Adapter",
    "cogvideox": "diffalign.pipelines.cogvideox:CogVideoXAdapter",
}

# diffusers pipeline class name (model_index.json "_class_name") -> family.
PIPELINE_CLASS_TO_FAMILY: dict[str, str] = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "CogVideoXPipeline": "cogvideox",
}


def register_adapter(family: str, pipeline_class_name: str | None = None) -> Callable:
    """Class decorator: make an adapter available as ``family`` (and auto-detected from
    ``pipeline_class_name`` in ``model_index.json``)."""

    def deco(cls: type[PipelineAdapter]) -> type[PipelineAdapter]:
        _ADAPTERS[family] = cls
        if pipeline_class_name:
            PIPELINE_CLASS_TO_FAMILY[pipeline_class_name] = family
        return cls

    return deco


def families() -> list[str]:
    return sorted(_ADAPTERS)


def get_adapter_class(family: str) -> type[PipelineAdapter]:
    if family not in _ADAPTERS:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(families())}")
    entry = _ADAPTERS[family]
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
        _ADAPTERS[family] = entry
    return entry


def detect_family(name_or_path: str, **hub_kwargs) -> str:
    """Read ``model_index.json`` (local folder or hub) and map its pipeline class to a family."""
    from diffalign.pipelines.loading import read_model_index

    index = read_model_index(name_or_path, **hub_kwargs)
    cls_name = index.get("_class_name")
    if cls_name not in PIPELINE_CLASS_TO_FAMILY:
        raise ValueError(
            f"{name_or_path}: model_index.json names pipeline class {cls_name!r}, which no adapter handles; "
            f"pass family= one of {', '.join(families())} or register an adapter"
        )
    return PIPELINE_CLASS_TO_FAMILY[cls_name]


def load_adapter(name_or_path: str, family: str | None = None, **kwargs) -> PipelineAdapter:
    """Load a pipeline (hub id or local diffusers folder) wrapped in its family adapter."""
    hub_kwargs = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
    family = family or detect_family(str(name_or_path), **hub_kwargs)
    return get_adapter_class(family).from_pretrained(name_or_path, **kwargs)


def adapter_for(pipe) -> PipelineAdapter:
    """Wrap an already built diffusers pipeline object in its adapter."""
    name = type(pipe).__name__
    if name not in PIPELINE_CLASS_TO_FAMILY:
        raise ValueError(f"no adapter for pipeline class {name}; known: {sorted(PIPELINE_CLASS_TO_FAMILY)}")
    return get_adapter_class(PIPELINE_CLASS_TO_FAMILY[name])(pipe)


__all__ = [
    "LORA_WEIGHT_NAME",
    "PipelineAdapter",
    "PromptEmbeds",
    "adapter_for",
    "detect_family",
    "families",
    "get_adapter_class",
    "load_adapter",
    "register_adapter",
]
