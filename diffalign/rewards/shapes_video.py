"""The moving-shapes temporal judge as a video reward (:func:`diffalign.shapes.judge_video`).

``load("shapes_video")`` scores videos [B, T, 3, H, W] against one moving-shapes row per video
(``metadata``): ``target="score"`` (default) is the judge's score in [0, 1] (the mean of its rule
values, 1 for a correct clip), ``target="correct"`` is 1/0. The last batch's full verdicts are kept
in ``last_results``, their reasons in ``last_reasons`` and the per-segment scores in
``last_segments`` ([B, num_segments]); :meth:`segment_scores` returns them directly, which is what
DenseDPO's dense labels need (:func:`diffalign.shapes.video.segment_preferences`).
"""
from __future__ import annotations

import torch

from diffalign.rewards.base import Reward

TARGETS = ("score", "correct")


class ShapesVideoReward(Reward):
    """Temporal-judge reward for moving-shapes clips (non-differentiable)."""

    modality = "video"
    requires_prompt = False
    requires_metadata = True
    native_range = (0.0, 1.0)

    def __init__(self, target: str = "score", num_segments: int = 3):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"unknown shapes_video target {target!r}; expected one of {', '.join(TARGETS)}")
        if int(num_segments) < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        self.target, self.num_segments = target, int(num_segments)
        self.last_results: list[dict] = []
        self.last_reasons: list[str] = []
        self.last_segments: torch.Tensor | None = None

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        from diffalign.shapes.video import judge_video

        self.last_results = [judge_video(samples[i], row, num_segments=self.num_segments)
                             for i, row in enumerate(metadata)]
        self.last_reasons = [r["reason"] for r in self.last_results]
        width = max(len(r["segments"]) for r in self.last_results)
        self.last_segments = torch.tensor([r["segments"] + [float("nan")] * (width - len(r["segments"]))
                                           for r in self.last_results], dtype=torch.float32)
        key = "score" if self.target == "score" else "correct"
        return torch.tensor([float(r[key]) for r in self.last_results], device=samples.device)

    def segment_scores(self, samples, metadata) -> torch.Tensor:
        """Per-segment judge scores [B, num_segments] of ``samples`` (NaN-padded for clips shorter
        than ``num_segments`` frames)."""
        self(samples, None, metadata)
        return self.last_segments

    def extra_repr(self) -> str:
        return super().extra_repr() + f", target={self.target}, num_segments={self.num_segments}"
