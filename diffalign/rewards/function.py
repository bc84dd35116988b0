"""Rewards given as Python objects: a plain callable, or several rewards with weights.

:func:`as_reward` turns whatever a user passes as "the reward" into one :class:`Reward`:

- a registered name (``"aesthetic"``) -> ``load(name)``;
- a :class:`Reward` -> itself;
- a plain callable ``fn(images, prompts) -> scores`` (or ``fn(images, prompts, metadata)``): images
  are float pixels in [0, 1] ``[B, 3, H, W]`` (videos ``[B, T, 3, H, W]``), prompts a list of ``B``
  strings; scores anything ``torch.as_tensor`` reads with ``B`` values -> :class:`CallableReward`;
- several with weights: a mapping ``{label: weight | options dict | Reward | callable | (reward, weight)}``
  or a list of ``(reward, weight)`` pairs -> the ``weighted_sum`` reward (every component logged).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.registry import load

__all__ = ["CallableReward", "as_reward"]


class CallableReward(Reward):
    """A plain function as a reward. Non-differentiable unless ``differentiable=True`` (then the
    function must keep its computation in torch)."""

    def __init__(self, fn: Callable, name: str | None = None, differentiable: bool = False, modality: str = "image",
                 higher_is_better: bool = True):
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        self.differentiable, self.modality, self.higher_is_better = differentiable, modality, higher_is_better
        self.requires_prompt = False
        try:
            params = inspect.signature(fn).parameters.values()
            self._takes_metadata = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) >= 3 or any(
                p.kind is p.VAR_POSITIONAL for p in params)
        except (TypeError, ValueError):
            self._takes_metadata = False

    def score(self, samples: torch.Tensor, prompts: list[str], metadata: list | None) -> torch.Tensor:
        out = self.fn(samples, prompts, metadata) if self._takes_metadata else self.fn(samples, prompts)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out, dtype=torch.float32)
        return out.to(device=samples.device).float().reshape(-1)


def as_reward(spec: Any, **options: Any) -> Reward:
    """One :class:`Reward` from a name, a Reward, a callable, or several with weights (see the module doc)."""
    if isinstance(spec, (str, Reward)):
        return load(spec, **options)
    if isinstance(spec, Mapping):
        return load("weighted_sum", rewards={label: _component(s) for label, s in spec.items()})
    if isinstance(spec, (list, tuple)):
        components = {}
        for i, item in enumerate(spec):
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise TypeError(f"reward[{i}]: expected a (reward, weight) pair, got {item!r}")
            reward, weight = item
            label = reward if isinstance(reward, str) else f"{_label(reward)}_{i}"
            components[label] = {"reward": as_reward(reward), "weight": float(weight)}
        return load("weighted_sum", rewards=components)
    if callable(spec):
        return CallableReward(spec, **options)
    raise TypeError(f"a reward is a registered name, a Reward, a callable (images, prompts) -> scores, or a mapping "
                    f"of those to weights; got {type(spec).__name__}")


def _component(spec: Any) -> Any:
    """A weighted_sum entry: callables and (reward, weight) pairs become ``{"reward": Reward, "weight": w}``."""
    if isinstance(spec, tuple) and len(spec) == 2:
        return {"reward": as_reward(spec[0]), "weight": float(spec[1])}
    if callable(spec) and not isinstance(spec, Reward):
        return {"reward": CallableReward(spec), "weight": 1.0}
    return spec


def _label(reward: Any) -> str:
    return reward.label if isinstance(reward, Reward) else getattr(reward, "__name__", type(reward).__name__)
