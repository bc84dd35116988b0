"""Shared plumbing of the video and multi-view wrappers: score N images per sample with an image reward."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.registry import load


def build_image_reward(reward: str | Reward, options: Mapping[str, Any] | None, wrapper: str) -> Reward:
    """The inner image reward of a wrapper, from a registry name (+ options) or an instance."""
    inner = load(reward, **dict(options or {}))
    if inner.modality != "image":
        raise ValueError(f"{wrapper} wraps an image reward; {inner.label!r} scores {inner.modality} samples")
    return inner


def score_items(reward: Reward, items: torch.Tensor, prompts: list[str], metadata: list | None) -> torch.Tensor:
    """Score ``items`` [B,K,3,H,W] with an image reward, each against its sample's prompt/metadata -> [B,K]."""
    b, k = items.shape[:2]
    flat_prompts = [p for p in prompts for _ in range(k)]
    flat_meta = [m for m in metadata for _ in range(k)] if metadata is not None else None
    scores = reward(items.reshape(b * k, *items.shape[2:]), flat_prompts, flat_meta)
    return scores.view(b, k)
