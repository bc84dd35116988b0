"""Reward scoring for the online trainers: the differentiability check, and scoring in
worker threads so the next batch samples while a separate reward model scores the last one."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import torch

from diffalign.rewards import Reward


def require_differentiable(reward: Reward, trainer: str) -> None:
    """Refuse a reward the reward-gradient trainers cannot back-propagate through."""
    if not reward.differentiable:
        raise ValueError(
            f"{trainer} back-propagates the reward into the model, so it needs a differentiable reward; "
            f"reward {reward.label!r} is not (differentiable=False). Use a differentiable reward "
            "(e.g. shapes_color, aesthetic, hpsv2, pickscore, imagereward, clip_score) or a policy-gradient "
            "trainer (ddpo, d3po, flow_grpo), which only need reward values."
        )


class RewardScorer:
    """``submit(samples, prompts, metadata)`` returns a future of the rewards [B] (fp32, detached).

    With ``workers = 0`` the reward runs immediately in the caller's thread.
    """

    def __init__(self, reward: Reward, workers: int = 1):
        self.reward = reward
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None

    def _score(self, samples: torch.Tensor, prompts: Sequence[str], metadata) -> torch.Tensor:
        with torch.no_grad():
            return self.reward(samples, list(prompts), metadata).detach().float()

    def submit(self, samples: torch.Tensor, prompts: Sequence[str], metadata=None) -> Future:
        if self._pool is not None:
            return self._pool.submit(self._score, samples, prompts, metadata)
        done: Future = Future()
        done.set_result(self._score(samples, prompts, metadata))
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


__all__ = ["RewardScorer", "require_differentiable"]
