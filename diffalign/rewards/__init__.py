"""Reward models behind one interface: ``load(name, **options)(samples, prompts, metadata) -> Tensor[B]``.

``samples`` are RGB pixels in [0, 1]: images [B,3,H,W], videos [B,T,3,H,W], multi-view [B,V,3,H,W]
(PIL lists and uint8 arrays are accepted too). Every reward has ``differentiable``, ``modality``
and ``higher_is_better`` attributes. Built-in names:

- rule-based: ``jpeg_compressibility``, ``jpeg_incompressibility``, ``geneval`` (GenEval's rules with a
  pluggable detector, needs ``metadata``), ``shapes`` (``geneval`` with the shapes judge's detector),
  ``shapes_color`` (differentiable colour match for the shapes world);
- learned: ``clip_score``, ``pickscore``, ``hpsv2``, ``hpsv2.1``, ``aesthetic``, ``imagereward``, ``mps``;
- wrappers: ``video`` and ``multiview`` (take an image reward by name), ``temporal_consistency``,
  ``weighted_sum`` (weighted composition that also returns every component).

In Python, :func:`as_reward` also takes a plain callable ``(images, prompts) -> scores`` or several
rewards with weights (what the trainers' ``reward=`` argument accepts). Add your own with ``@register("name")`` on a :class:`Reward` subclass, or an entry point in the
``diffalign.rewards`` group. See ``docs/rewards.md``.
"""
from diffalign.rewards.base import Reward
from diffalign.rewards.function import CallableReward, as_reward
from diffalign.rewards.inputs import MODALITIES, as_samples
from diffalign.rewards.registry import REWARDS, available, get_factory, load, parse_reward_spec, register

__all__ = [
    "CallableReward", "MODALITIES", "REWARDS", "Reward", "as_reward", "as_samples", "available", "get_factory", "load",
    "parse_reward_spec", "register",
]
