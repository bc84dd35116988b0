"""Video rewards: any image reward over selected frames, and a temporal-consistency reward.

``load("video", reward="hpsv2", frames="tsn", num_frames=4, weighting="attenuated")``.

Frame selection (``frames``), for a video of T frames:

- ``"all"``: every frame;
- ``"uniform"``: ``num_frames`` frames at ``round(linspace(0, T-1, K))``;
- ``"fml"``: first, middle (``T // 2``) and last (VADER's ``--decode_frame fml``);
- ``"random"``: one random frame per video (VADER's ``-1``);
- ``"tsn"``: InstructVideo's segmental sampling: ``num_frames`` segments of ``span = T // num_frames``
  frames, one frame per segment at ``offset + s * span`` where ``tsn_offset`` is ``"random"``
  (a random offset in ``[0, span)`` per video and segment, as in training), ``"first"`` (VGen's
  ``fixed_first``) or ``"middle"``.

Weighting (``weighting``): ``"uniform"`` averages the frame scores; ``"attenuated"`` is InstructVideo's
temporally attenuated reward exactly as VGen computes it: the mean over the selected frames of
``exp(-lambda_tar * |t - T // 2|) * score_t`` (not renormalised, so it is smaller than the plain mean;
VGen's default ``lambda_tar`` is 1).

``temporal_consistency`` is VBench's temporal-flickering score on [0, 1] pixels:
``1 - mean |frame_{t+1} - frame_t|`` (1 for a still video; differentiable).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.wrapping import build_image_reward, score_items

FRAME_SELECTIONS = ("all", "uniform", "fml", "random", "tsn")
WEIGHTINGS = ("uniform", "attenuated")
TSN_OFFSETS = ("random", "first", "middle")


def select_frames(
    num_videos: int,
    num_total: int,
    frames: str = "uniform",
    num_frames: int = 4,
    tsn_offset: str = "random",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Frame indices [num_videos, K] for videos of ``num_total`` frames (see the module docstring)."""
    t = num_total
    if t < 1:
        raise ValueError("a video needs at least one frame")
    if frames == "all":
        idx = torch.arange(t)
    elif frames == "uniform":
        idx = torch.linspace(0, t - 1, min(num_frames, t)).round().long()
    elif frames == "fml":
        idx = torch.tensor([0, t // 2, t - 1])
    elif frames == "random":
        return torch.randint(t, (num_videos, 1), generator=generator)
    elif frames == "tsn":
        if not 1 <= num_frames <= t:
            raise ValueError(f"tsn sampling needs 1 <= num_frames (segments) <= frames per video, got {num_frames} and {t}")
        span = t // num_frames
        starts = torch.arange(num_frames) * span
        if tsn_offset == "random":
            return starts + torch.randint(span, (num_videos, num_frames), generator=generator)
        if tsn_offset not in TSN_OFFSETS:
            raise ValueError(f"unknown tsn_offset {tsn_offset!r}; expected one of {', '.join(TSN_OFFSETS)}")
        idx = starts + (0 if tsn_offset == "first" else span // 2)
    else:
        raise ValueError(f"unknown frame selection {frames!r}; expected one of {', '.join(FRAME_SELECTIONS)}")
    return idx.expand(num_videos, -1).clone()


def frame_weights(indices: torch.Tensor, num_total: int, weighting: str = "uniform", lambda_tar: float = 1.0) -> torch.Tensor:
    """Per-frame weights [B, K]: ``1/K`` (uniform) or ``exp(-lambda |t - T//2|) / K`` (attenuated)."""
    k = indices.shape[1]
    if weighting == "uniform":
        return torch.full(indices.shape, 1.0 / k)
    if weighting == "attenuated":
        return torch.exp(-lambda_tar * (indices - num_total // 2).abs().float()) / k
    raise ValueError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")


class VideoFrames(Reward):
    """Score videos [B,T,3,H,W] with an image reward on selected frames and combine the frame scores."""

    modality = "video"

    def __init__(
        self,
        reward: str | Reward,
        frames: str = "uniform",
        num_frames: int = 4,
        tsn_offset: str = "random",
        weighting: str = "uniform",
        lambda_tar: float = 1.0,
        seed: int | None = None,
        reward_options: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if frames not in FRAME_SELECTIONS:
            raise ValueError(f"unknown frame selection {frames!r}; expected one of {', '.join(FRAME_SELECTIONS)}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
        self.image_reward = build_image_reward(reward, reward_options, "video")
        self.frames, self.num_frames, self.tsn_offset = frames, int(num_frames), tsn_offset
        self.weighting, self.lambda_tar = weighting, float(lambda_tar)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.differentiable = self.image_reward.differentiable
        self.higher_is_better = self.image_reward.higher_is_better
        self.requires_prompt = self.image_reward.requires_prompt
        self.requires_metadata = self.image_reward.requires_metadata
        self.last_frame_indices: torch.Tensor | None = None

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        b, t = samples.shape[:2]
        idx = select_frames(b, t, self.frames, self.num_frames, self.tsn_offset, self.generator)
        self.last_frame_indices = idx
        picked = samples[torch.arange(b)[:, None], idx.to(samples.device)]  # [B, K, 3, H, W]
        scores = score_items(self.image_reward, picked, prompts, metadata)
        weights = frame_weights(idx, t, self.weighting, self.lambda_tar).to(scores)
        return (weights * scores).sum(1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", frames={self.frames}, num_frames={self.num_frames}, weighting={self.weighting}"


class TemporalConsistency(Reward):
    """VBench temporal flickering: ``1 - mean |frame_{t+1} - frame_t|`` over pixels and channels."""

    modality = "video"
    differentiable = True
    requires_prompt = False
    native_range = (0.0, 1.0)

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        if samples.shape[1] < 2:
            raise ValueError(f"temporal_consistency needs at least 2 frames per video, got {samples.shape[1]}")
        return 1.0 - (samples[:, 1:] - samples[:, :-1]).abs().flatten(1).mean(1)
