"""Reward registry: ``load(name, **options)`` and ``@register(name)``.

Built-in rewards are listed as ``"module:attribute"`` strings and imported only when loaded, so
``import diffalign.rewards`` stays light (no transformers / open_clip / timm import). Other packages
can add rewards without importing diffalign first by declaring an entry point in the
``diffalign.rewards`` group (``name = "package.module:RewardClass"``).
"""
from __future__ import annotations

import inspect
import json
from typing import Any, Callable

import torch

from diffalign.registry import Registry
from diffalign.rewards.base import Reward

ENTRY_POINT_GROUP = "diffalign.rewards"

_BUILTIN: dict[str, str] = {
    "jpeg_compressibility": "diffalign.rewards.jpeg:JpegCompressibility",
    "jpeg_incompressibility": "diffalign.rewards.jpeg:JpegIncompressibility",
    "shapes": "diffalign.rewards.shapes:ShapesJudgeReward",
    "geneval": "diffalign.rewards.geneval:GenEvalReward",
    "shapes_color": "diffalign.rewards.shapes_color:ShapesColorReward",
    "shapes_video": "diffalign.rewards.shapes_video:ShapesVideoReward",
    "shapes_video_motion": "diffalign.rewards.shapes_video_motion:ShapesVideoMotionReward",
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
    "remote": "diffalign.rewards.remote:RemoteReward",
    "vlm_judge": "diffalign.rewards.vlm_judge:VLMJudgeReward",
    "ocr": "diffalign.rewards.ocr:OCRReward",
}


def _record_name(name: str, factory: Callable[..., Reward]) -> None:
    """A reward class registered under ``name`` takes it as its default ``name``."""
    if isinstance(factory, type) and issubclass(factory, Reward) and not factory.__dict__.get("name"):
        factory.name = name


#: reward name -> class or factory function returning a :class:`Reward`.
REWARDS: Registry[Callable[..., Reward]] = Registry(
    "reward", _BUILTIN, entry_point_group=ENTRY_POINT_GROUP, on_resolve=_record_name
)


def register(name: str, factory: Callable[..., Reward] | None = None, *, override: bool = False):
    """Make ``factory`` (a :class:`Reward` subclass or a function returning one) loadable as ``name``.

    Use as a decorator (``@register("my_reward")``) or call directly. Registering a taken name
    raises unless ``override=True``.
    """
    return REWARDS.register(name, factory, override=override)


def available() -> list[str]:
    """Names ``load`` accepts (built-ins, registered and entry-point rewards)."""
    return REWARDS.names()


def get_factory(name: str) -> Callable[..., Reward]:
    """The class or function registered as ``name`` (imported on first use)."""
    return REWARDS.get(name)


def parse_reward_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``"name:k=v,k2=v2"`` -> ``("name", {"k": v, "k2": v2})``; values are read as JSON when they
    parse (``scale=0.5`` is a float, ``dtype=float16`` stays a string)."""
    name, _, rest = text.partition(":")
    if not name:
        raise ValueError(f"reward spec {text!r} has no name")
    options: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"reward spec {text!r}: option {part!r} is not key=value")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return name, options


def load(name: str | Reward, *, device: Any = None, **options: Any) -> Reward:
    """Build the reward registered as ``name`` with ``options`` (its constructor's keyword arguments).

    ``name`` may carry options itself, as written on a command line: ``"hpsv2.1:path=/models/hps"``
    (:func:`parse_reward_spec`; they override the keyword ``options``). A :class:`Reward` instance
    passes through unchanged (options are then not allowed), so APIs that take "a reward" accept
    either a name or an object. ``device``: where to put it (``"auto"``: CUDA when available).
    """
    if isinstance(name, Reward):
        if options:
            raise TypeError(f"options {sorted(options)} given together with an already built reward {name.label!r}")
        reward = name
    else:
        if ":" in name:
            name, spec_options = parse_reward_spec(name)
            options = {**options, **spec_options}
        factory = get_factory(name)
        _check_options(name, factory, options)
        reward = factory(**options)
        if not isinstance(reward, Reward):
            raise TypeError(f"reward factory {name!r} returned {type(reward).__name__}, not a Reward")
        reward.name = name  # the name it was loaded under ("hpsv2" and "hpsv2.1" share a class)
        reward = reward.freeze()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return reward.to(device) if device is not None else reward


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
