"""Losses of the reward-gradient trainers (AlignProp, DRaFT, ReFL): shaping of differentiable rewards.

The reward [B] is computed on decoded samples with the graph attached; the loss is minimised, so
every shape below turns "higher reward" into "lower loss":

- ``negative``: ``-r`` (DRaFT; AlignProp's HPS loss ``1 - r`` has the same gradient);
- ``target_l1``: ``|r - target|`` (AlignProp / VADER aesthetic, target 10: pulls toward a value
  instead of pushing without bound);
- ``hinge``: ``relu(target - r)`` (ReFL: ImageReward threshold 2; stops pushing once a sample
  scores above the target).

The loss is ``scale * mean(shaped)`` (AlignProp's ``loss_coeff`` 0.01, ReFL's ``grad_scale`` 1e-3).
"""
from __future__ import annotations

import torch
from torch import Tensor

from diffalign.losses._common import as_fp32, floats

__all__ = ["REWARD_LOSS_KINDS", "reward_loss"]

REWARD_LOSS_KINDS = ("negative", "target_l1", "hinge")


def reward_loss(
    rewards: Tensor, kind: str = "negative", target: float | None = None, scale: float = 1.0
) -> tuple[Tensor, dict[str, float]]:
    """Shape differentiable rewards [B] into a scalar loss (see the module docstring).

    ``target`` is required by ``target_l1`` and ``hinge``. Stats: ``loss``, ``reward_mean``,
    ``reward_std`` and, for ``hinge``, ``hinge_active`` (fraction of samples below the target).
    """
    r = as_fp32("rewards", rewards)
    if kind not in REWARD_LOSS_KINDS:
        raise ValueError(f"unknown reward loss kind {kind!r}; expected one of {', '.join(REWARD_LOSS_KINDS)}")
    if kind != "negative" and target is None:
        raise ValueError(f"reward loss kind {kind!r} needs a target value")
    if kind == "negative":
        shaped = -r
    elif kind == "target_l1":
        shaped = (r - target).abs()
    else:
        shaped = torch.relu(target - r)
    loss = scale * shaped.mean()
    stats = {
        "loss": loss,
        "reward_mean": r.detach().mean(),
        "reward_std": r.detach().std(unbiased=False),
    }
    if kind == "hinge":
        stats["hinge_active"] = (r.detach() < target).float().mean()
    return loss, floats(stats)
