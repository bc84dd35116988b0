"""Model-family adapters over the real diffusers pipeline classes.

``load_adapter("path/or/hub-id")`` picks the family from the folder's ``model_index.json``;
``load_adapter(path, family="sdxl")`` forces it. New families register with ``@register_adapter`` or a ``diffalign.families`` entry point.
"""
from __future__ import annotations

from typing import Callable

from diffalign.pipelines.base import LORA_WEIGHT_NAME, PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.registry import Registry

#: model families: name -> adapter class. Built-ins are imported lazily, so loading one family never
#: imports the others; others register with :func:`register_adapter` or an entry point in the
#: ``diffalign.families`` group (``myfamily = "pkg.module:MyAdapter"``).
FAMILIES: Registry[type[PipelineAdapter]] = Registry(
    "model family",
    {
        "sd": "diffalign.pipelines.sd:SDAdapter",
        "sdxl": "diffalign.pipelines.sdxl:SDXLAdapter",
        "sd3": "diffalign.pipelines.sd3:SD3Adapter",
        "cogvideox": "diffalign.pipelines.cogvideox:CogVideoXAdapter",
        "flux": "diffalign.pipelines.flux:FluxAdapter",
        "wan": "diffalign.pipelines.wan:WanAdapter",
        "qwenimage": "diffalign.pipelines.qwenimage:QwenImageAdapter",
        "flux2": "diffalign.pipelines.flux2:Flux2KleinAdapter",
        "zimage": "diffalign.pipelines.zimage:ZImageAdapter",
        "hunyuanvideo15": "diffalign.pipelines.hunyuanvideo15:HunyuanVideo15Adapter",
        "ltx2": "diffalign.pipelines.ltx2:LTX2Adapter",
    },
    entry_point_group="diffalign.families",
)

# diffusers pipeline class name (model_index.json "_class_name") -> family, for the built-ins (known
# without importing them); registered families add theirs, entry-point ones are read on a miss.
PIPELINE_CLASS_TO_FAMILY: dict[str, str] = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "CogVideoXPipeline": "cogvideox",
    "FluxPipeline": "flux",
    "WanPipeline": "wan",
    "QwenImagePipeline": "qwenimage",
    "Flux2KleinPipeline": "flux2",
    "ZImagePipeline": "zimage",
    "HunyuanVideo15Pipeline": "hunyuanvideo15",
    "LTX2Pipeline": "ltx2",
}


def register_adapter(family: str, pipeline_class_name: str | None = None, *, override: bool = False) -> Callable:
    """Class decorator: make an adapter available as ``family``, auto-detected from the
    ``_class_name`` of ``model_index.json`` (``pipeline_class_name``, default: the name of the
    adapter's ``pipeline_class``)."""

    def deco(cls: type[PipelineAdapter]) -> type[PipelineAdapter]:
        FAMILIES.register(family, cls, override=override)
        PIPELINE_CLASS_TO_FAMILY[pipeline_class_name or cls.pipeline_class.__name__] = family
        return cls

    return deco


def families() -> list[str]:
    """Every model family name (built-in, registered and entry points)."""
    return FAMILIES.names()


def get_adapter_class(family: str) -> type[PipelineAdapter]:
    """The adapter class of ``family``; an unknown name raises a one-line ``UnknownNameError``."""
    return FAMILIES.get(family)


def family_of_pipeline_class(class_name: str) -> str | None:
    """The family whose adapter wraps the diffusers pipeline class ``class_name`` (None if none does)."""
    if class_name not in PIPELINE_CLASS_TO_FAMILY:
        for name in FAMILIES.names():  # entry-point families: import them to read their pipeline class
            if name not in PIPELINE_CLASS_TO_FAMILY.values():
                PIPELINE_CLASS_TO_FAMILY.setdefault(FAMILIES.get(name).pipeline_class.__name__, name)
    return PIPELINE_CLASS_TO_FAMILY.get(class_name)


def detect_family(name_or_path: str, **hub_kwargs) -> str:
    """Read ``model_index.json`` (local folder or hub) and map its pipeline class to a family."""
    from diffalign.pipelines.loading import read_model_index

    index = read_model_index(name_or_path, **hub_kwargs)
    cls_name = index.get("_class_name")
    family = family_of_pipeline_class(cls_name)
    if family is None:
        raise ValueError(
            f"{name_or_path}: model_index.json names pipeline class {cls_name!r}, which no adapter handles; "
            f"pass family= one of {', '.join(families())} or register an adapter"
        )
    return family


def load_adapter(name_or_path: str, family: str | None = None, **kwargs) -> PipelineAdapter:
    """Load a pipeline (hub id or local diffusers folder) wrapped in its family adapter."""
    hub_kwargs = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
    family = family or detect_family(str(name_or_path), **hub_kwargs)
    return get_adapter_class(family).from_pretrained(name_or_path, **kwargs)


def adapter_for(pipe) -> PipelineAdapter:
    """Wrap an already built diffusers pipeline object in its adapter."""
    name = type(pipe).__name__
    family = family_of_pipeline_class(name)
    if family is None:
        raise ValueError(f"no adapter for pipeline class {name}; known: {', '.join(sorted(PIPELINE_CLASS_TO_FAMILY))}")
    return get_adapter_class(family)(pipe)


__all__ = [
    "LORA_WEIGHT_NAME",
    "PipelineAdapter",
    "PromptEmbeds",
    "adapter_for",
    "FAMILIES",
    "detect_family",
    "families",
    "family_of_pipeline_class",
    "get_adapter_class",
    "load_adapter",
    "register_adapter",
]
