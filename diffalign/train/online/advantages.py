"""Advantages from rewards: DDPO's persistent per-prompt tracker and Flow-GRPO's group statistics.

All functions take the rewards of *every* process (gathered) with their prompts and return one
advantage per reward, in the same order; statistics are population std (``ddof = 0``) in float64,
as both reference implementations compute them with numpy.
"""
from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np
import torch


def _as_array(rewards) -> np.ndarray:
    if isinstance(rewards, torch.Tensor):
        rewards = rewards.detach().double().cpu().numpy()
    arr = np.asarray(rewards, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"rewards must be one value per sample, got shape {arr.shape}")
    return arr


def _check(prompts: Sequence[str], rewards: np.ndarray) -> np.ndarray:
    if len(prompts) != len(rewards):
        raise ValueError(f"{len(prompts)} prompts for {len(rewards)} rewards")
    return np.asarray(list(prompts), dtype=object)


class PerPromptStatTracker:
    """DDPO's per-prompt reward normaliser (kvablack/ddpo-pytorch ``stat_tracking.py``).

    Each prompt keeps a FIFO of its last ``buffer_size`` rewards across iterations. On ``update``,
    each prompt's new rewards are appended first; then, if its FIFO holds fewer than ``min_count``
    rewards, they are normalised with the mean and std of the whole batch given, else with the
    FIFO's; ``std + 1e-6``.
    """

    def __init__(self, buffer_size: int = 16, min_count: int = 16):
        if buffer_size < 1 or min_count < 1:
            raise ValueError(f"buffer_size and min_count must be >= 1, got {buffer_size} and {min_count}")
        self.buffer_size, self.min_count = int(buffer_size), int(min_count)
        self.stats: dict[str, deque] = {}

    def update(self, prompts: Sequence[str], rewards) -> torch.Tensor:
        r = _as_array(rewards)
        names = _check(prompts, r)
        advantages = np.empty_like(r)
        for prompt in dict.fromkeys(prompts):
            mask = names == prompt
            buffer = self.stats.setdefault(prompt, deque(maxlen=self.buffer_size))
            buffer.extend(r[mask].tolist())
            if len(buffer) < self.min_count:
                mean, std = r.mean(), r.std() + 1e-6
            else:
                values = np.asarray(buffer)
                mean, std = values.mean(), values.std() + 1e-6
            advantages[mask] = (r[mask] - mean) / std
        return torch.from_numpy(advantages)

    def state_dict(self) -> dict:
        """JSON-serialisable state (for exact resume)."""
        return {"buffer_size": self.buffer_size, "min_count": self.min_count,
                "stats": {p: list(v) for p, v in self.stats.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.buffer_size, self.min_count = int(state["buffer_size"]), int(state["min_count"])
        self.stats = {p: deque(v, maxlen=self.buffer_size) for p, v in state["stats"].items()}


def group_advantages(prompts: Sequence[str], rewards, global_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Flow-GRPO's group-relative advantages: ``(r - mean of the prompt's rewards) / (std + eps)`` with
    the std over the prompt's rewards (``global_std=False``) or over all rewards given (``True``).
    A group whose rewards are all equal gets advantage 0 for every member."""
    r = _as_array(rewards)
    names = _check(prompts, r)
    advantages = np.empty_like(r)
    overall_std = r.std()
    for prompt in dict.fromkeys(prompts):
        mask = names == prompt
        group = r[mask]
        std = overall_std if global_std else group.std()
        advantages[mask] = (group - group.mean()) / (std + eps)
    return torch.from_numpy(advantages)


def per_reward_advantages(prompts: Sequence[str], components, weights: Sequence[float] | None = None,
                          global_std: bool = True, eps: float = 1e-4, normalise=None) -> torch.Tensor:
    """Several rewards combined after normalising each one (MixGRPO's / GDPO's multi-reward
    aggregation): ``sum_k w_k * group_advantages(prompts, r_k)``. ``components``: a mapping
    ``name -> rewards [B]`` or a [B, K] array; ``weights`` default to 1. Unlike normalising the
    weighted sum, a reward with a large scale (or variance) cannot drown the others.
    ``normalise(k, r_k)`` replaces ``group_advantages`` (DDPO: component ``k``'s stat tracker)."""
    if isinstance(components, dict):
        columns = [_as_array(v) for v in components.values()]
    else:
        matrix = np.asarray(components.detach().cpu() if isinstance(components, torch.Tensor) else components, dtype=np.float64)
        if matrix.ndim != 2:
            raise ValueError(f"components must be [B, K], got shape {matrix.shape}")
        columns = list(matrix.T)
    weights = [1.0] * len(columns) if weights is None else [float(w) for w in weights]
    if len(weights) != len(columns):
        raise ValueError(f"{len(weights)} weights for {len(columns)} rewards")
    if normalise is None:
        def normalise(k, column):
            return group_advantages(prompts, column, global_std, eps)

    return sum(w * normalise(k, c) for k, (w, c) in enumerate(zip(weights, columns)))


def global_advantages(rewards, eps: float = 1e-8) -> torch.Tensor:
    """Batch normalisation without prompt grouping: ``(r - mean) / (std + eps)``."""
    r = _as_array(rewards)
    return torch.from_numpy((r - r.mean()) / (r.std() + eps))


def zero_std_ratio(prompts: Sequence[str], rewards) -> float:
    """Fraction of prompts whose rewards are all equal (their group carries no signal)."""
    r = _as_array(rewards)
    names = _check(prompts, r)
    unique = list(dict.fromkeys(prompts))
    return sum(float(r[names == p].std() == 0) for p in unique) / len(unique)


def keep_nonzero(advantages: torch.Tensor, multiple: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flow-GRPO's filter: a boolean mask keeping the samples with a non-zero advantage, plus random
    dropped ones until the count is a positive multiple of ``multiple`` (so every process trains the
    same number of micro-batches)."""
    keep = advantages.reshape(advantages.shape[0], -1).abs().sum(dim=1) != 0
    count = int(keep.sum())
    target = max(multiple, -(-count // multiple) * multiple)
    dropped = (~keep).nonzero().reshape(-1)
    need = min(target - count, dropped.numel())
    if need > 0:
        pick = dropped[torch.randperm(dropped.numel(), generator=generator)[:need]]
        keep[pick] = True
    return keep


__all__ = ["PerPromptStatTracker", "global_advantages", "group_advantages", "keep_nonzero", "per_reward_advantages",
           "zero_std_ratio"]
