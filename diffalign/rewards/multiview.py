"""Multi-view (3D) rewards: score every view with an image reward and aggregate.

``load("multiview", reward="imagereward", reduce="mean")`` scores samples [B,V,3,H,W] (V rendered
views of one object per prompt). ``reduce``: ``"mean"``, ``"min"`` (the worst view; penalises
Janus-style failures) or ``"weighted"`` (``view_weights``, one per view, normalised to sum 1).

Dedicated multi-view reward models (Reward3D / MVReward-style heads that look at all views
together) implement :class:`~diffalign.rewards.base.Reward` directly with ``modality = "multiview"``
and receive the whole [B,V,3,H,W] tensor in ``score``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.wrapping import build_image_reward, score_items

REDUCTIONS = ("mean", "min", "weighted")


class MultiViewReward(Reward):
    """An image reward over every view of multi-view samples, reduced per sample."""

    modality = "multiview"

    def __init__(
        self,
        reward: str | Reward,
        reduce: str = "mean",
        view_weights: Sequence[float] | None = None,
        reward_options: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduce!r}; expected one of {', '.join(REDUCTIONS)}")
        if (reduce == "weighted") != (view_weights is not None):
            raise ValueError("view_weights is required with reduce='weighted' and only allowed with it")
        if view_weights is not None:
            w = torch.as_tensor(view_weights, dtype=torch.float32)
            if w.ndim != 1 or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"view_weights must be non-negative with a positive sum, got {list(view_weights)}")
            self.register_buffer("view_weights", w / w.sum(), persistent=False)
        else:
            self.view_weights = None
        self.image_reward = build_image_reward(reward, reward_options, "multiview")
        self.reduce = reduce
        self.differentiable = self.image_reward.differentiable
        self.higher_is_better = self.image_reward.higher_is_better
        self.requires_prompt = self.image_reward.requires_prompt
        self.requires_metadata = self.image_reward.requires_metadata

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        scores = score_items(self.image_reward, samples, prompts, metadata)  # [B, V]
        if self.reduce == "mean":
            return scores.mean(1)
        if self.reduce == "min":
            return scores.min(1).values if self.higher_is_better else scores.max(1).values
        if self.view_weights.numel() != scores.shape[1]:
            raise ValueError(f"{self.view_weights.numel()} view_weights for samples with {scores.shape[1]} views")
        return scores @ self.view_weights.to(scores)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reduce={self.reduce}"
