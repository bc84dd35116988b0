"""Reward registry: ``load(name, **options)`` and ``@register(name)``.

Built-in rewards are listed as ``"module:attribute"`` strings and imported only when loaded, so
``import diffalign.rewards`` stays light (no transformers / open_clip / timm import). Other packages
can add rewards without importing diffalign first by declaring an entry point in the
``diffalign.rewards`` group (``name = "package.module:RewardClass"``).
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from diffalign.rewards.base import Reward

ENTRY_POINT_GROUP = "diffalign.rewards"

_BUILTIN: dict[str, str] = {
    "jpeg_compressibility": "diffalign.rewards.jpeg:JpegCompressibility",
    "jpeg_incompressibility": "diffalign.rewards.jpeg:JpegIncompressibility",
    "shapes": "diffalign.rewards.shapes:ShapesJudgeReward",
    "geneval": "diffalign.rewards.geneval:GenEvalReward",
    "shapes_color": "diffalign.rewards.shapes_color:ShapesColorReward",
    "clip_score": "diffalign.rewards.clip_score:ClipScore",
    "pickscore": "diffalign.rewards.pickscore:PickScore",
    "aesthetic": "diffalign.rewards.aesthetic:AestheticScore",
    "hpsv2": "diffalign.rewards.hps:HPSv2",
    "hpsv2.1": "diffalign.rewards.hps:HPSv21",
    "imagereward": "diffalign.rewards.imagereward:ImageReward",
    "mps": "diffalign.rewards.mps:MPS",
    "video": "diffalign.rewards.video:VideoFrames",
    "temporal_consistency": "diffalign.rewards.video:TemporalConsistency",
    "multiview": "diffalign.rewards.multiview:MultiViewReward",
    "weighted_sum": "diffalign.rewards.compose:WeightedSum",
}

_REGISTRY: dict[str, str | Callable[..., Reward]] = dict(_BUILTIN)
_entry_points_read = False


def register(name: str, factory: Callable[..., Reward] | None = None, *, override: bool = False):
    """Make ``factory`` (a :class:`Reward` subclass or a function returning one) loadable as ``name``.

    Use as a decorator (``@register("my_reward")``) or call directly. Registering a taken name
    raises unless ``override=True``.
    """

    def add(obj: Callable[..., Reward]) -> Callable[..., Reward]:
        if name in _REGISTRY and not override and _REGISTRY[name] is not obj:
            raise ValueError(f"a reward named {name!r} is already registered; pass override=True to replace it")
        _REGISTRY[name] = obj
        if isinstance(obj, type) and issubclass(obj, Reward) and not obj.__dict__.get("name"):
            obj.name = name
        return obj

    return add(factory) if factory is not None else add


def _read_entry_points() -> None:
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name, ep.value)


def available() -> list[str]:
    """Names ``load`` accepts (built-ins, registered and entry-point rewards)."""
    _read_entry_points()
    return sorted(_REGISTRY)


def get_factory(name: str) -> Callable[..., Reward]:
    """The class or function registered as ``name`` (imported on first use)."""
    if name not in _REGISTRY:
        _read_entry_points()
    if name not in _REGISTRY:
        raise KeyError(f"unknown reward {name!r}; available: {', '.join(available())}")
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = entry
        if isinstance(entry, type) and issubclass(entry, Reward) and not entry.__dict__.get("name"):
            entry.name = name
    return entry


def load(name: str | Reward, **options: Any) -> Reward:
    """Build the reward registered as ``name`` with ``options`` (its constructor's keyword arguments).

    A :class:`Reward` instance passes through unchanged (options are then not allowed), so APIs that
    take "a reward" accept either a name or an object.
    """
    if isinstance(name, Reward):
        if options:
            raise TypeError(f"options {sorted(options)} given together with an already built reward {name.label!r}")
        return name
    factory = get_factory(name)
    _check_options(name, factory, options)
    reward = factory(**options)
    if not isinstance(reward, Reward):
        raise TypeError(f"reward factory {name!r} returned {type(reward).__name__}, not a Reward")
    reward.name = name  # the name it was loaded under ("hpsv2" and "hpsv2.1" share a class)
    return reward.freeze()


def _check_options(name: str, factory: Callable, options: dict) -> None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"reward {name!r} got unknown options {unknown}; it accepts: {', '.join(accepted) or 'none'}")
