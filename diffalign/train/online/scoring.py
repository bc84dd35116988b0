"""Reward scoring for the online trainers: the differentiability check, and scoring in
worker threads so the next batch samples while a separate reward model scores the last one."""
from __future__ import annotations

import threading
import time
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


def component_weights(reward: Reward) -> dict[str, float]:
    """``{label: weight}`` of a combined reward (``weighted_sum``), for per-reward advantages."""
    if not hasattr(reward, "score_components"):
        raise ValueError(f"advantages.per_reward needs several rewards combined (reward.name: weighted_sum, or a mapping "
                         f"of rewards to weights in Python); reward {reward.label!r} is a single reward")
    return dict(reward.weights)


class RewardScorer:
    """``submit(samples, prompts, metadata)`` returns a future of the rewards [B] (fp32, detached);
    with ``components=True`` (a ``weighted_sum`` reward) a future of ``(rewards [B], components [B, K])``,
    the columns in the order of :func:`component_weights`.

    With ``workers = 0`` the reward runs immediately in the caller's thread.

    ``busy_s`` is the wall time spent scoring since the last :meth:`take_busy_s` (summed over
    submissions, whichever thread scored them): the reward's own cost, whether or not it was hidden
    behind sampling.
    """

    def __init__(self, reward: Reward, workers: int = 1):
        self.reward = reward
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
        self._lock = threading.Lock()
        self.busy_s = 0.0

    def take_busy_s(self) -> float:
        """The scoring time accumulated since the last call, and reset it."""
        with self._lock:
            busy, self.busy_s = self.busy_s, 0.0
        return busy

    def _score(self, samples: torch.Tensor, prompts: Sequence[str], metadata, components: bool = False):
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                if not components:
                    return self.reward(samples, list(prompts), metadata).detach().float()
                total, parts = self.reward.score_components(samples, list(prompts), metadata)
                return total.detach().float(), torch.stack([p.detach().float() for p in parts.values()], dim=1)
        finally:
            with self._lock:
                self.busy_s += time.perf_counter() - t0

    def submit(self, samples: torch.Tensor, prompts: Sequence[str], metadata=None, components: bool = False) -> Future:
        if self._pool is not None:
            return self._pool.submit(self._score, samples, prompts, metadata, components)
        done: Future = Future()
        done.set_result(self._score(samples, prompts, metadata, components))
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


__all__ = ["RewardScorer", "component_weights", "require_differentiable"]
