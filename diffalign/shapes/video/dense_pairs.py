"""DenseDPO pairs on the moving-shapes world (StructuralDPO pair construction + dense labels).

For each prompt row, a ground-truth source clip is rendered (:func:`render_video`), then two copies
of it are partially noised to the same guidance level ``eta`` (drawn per pair from ``eta_range``,
DenseDPO's U(0.65, 0.8); the same level for both copies, otherwise the more-guided clip wins by
shortcut) with two independent noises and denoised by the video model -- SDEdit through diffusers'
own video-to-video pipeline over the same components (``CogVideoXVideoToVideoPipeline`` for
CogVideoX, ``WanVideoToVideoPipeline`` for Wan; ``strength`` = eta, so ``round(eta * steps)`` steps
run). The pair shares the source's motion and differs in detail. The temporal judge scores both
clips per segment and :func:`segment_preferences` turns the segment scores into labels (+1 clip 0
wins, -1 clip 1 wins, 0 tie).

:func:`make_dense_pairs` writes ``OUT/videos/<row:05d>_<k:02d>_{0,1}.mp4`` and ``OUT/pairs.jsonl``
with the columns :class:`~diffalign.data.video_pairs.VideoPairDataset` reads (``caption``,
``video_0``, ``video_1``, ``segment_labels``; paths relative to the jsonl) plus ``eta``, both
clips' scores and segment scores, and the row's ``metadata``. Train on it with
``data: {kind: video_pairs, path: OUT/pairs.jsonl}``.
"""
from __future__ import annotations

import inspect
import json
import os
from typing import Mapping, Sequence

import numpy as np

from diffalign.shapes.video.judge import judge_video, segment_preferences
from diffalign.shapes.video.render import DEFAULT_FRAMES, DEFAULT_SIZE, render_video
from diffalign.utils.video import DEFAULT_FPS, write_video

ETA_RANGE = (0.65, 0.8)
VIDEO_TO_VIDEO = {
    "CogVideoXPipeline": "CogVideoXVideoToVideoPipeline",
    "WanPipeline": "WanVideoToVideoPipeline",
}


def video_to_video_pipeline(pipe):
    """The SDEdit (video-to-video) pipeline over ``pipe``'s components; a pipeline that already
    takes ``video`` and ``strength`` is returned as it is."""
    params = inspect.signature(pipe).parameters
    if "video" in params and "strength" in params:
        return pipe
    name = type(pipe).__name__
    if name not in VIDEO_TO_VIDEO:
        raise ValueError(f"no video-to-video pipeline known for {name}; expected one of {', '.join(VIDEO_TO_VIDEO)}")
    import diffusers

    return getattr(diffusers, VIDEO_TO_VIDEO[name])(**pipe.components)


def make_dense_pairs(
    pipe,
    rows: Sequence[Mapping],
    out: str,
    *,
    pairs_per_prompt: int = 1,
    eta_range: tuple[float, float] = ETA_RANGE,
    num_frames: int = DEFAULT_FRAMES,
    size: int = DEFAULT_SIZE,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.0,
    num_segments: int = 3,
    margin: float = 0.0,
    seed: int = 0,
    fps: int = DEFAULT_FPS,
    **sampling,
) -> list[dict]:
    """Make, label and write DenseDPO pairs (see the module docstring); returns the written records."""
    import torch
    from PIL import Image

    lo, hi = float(eta_range[0]), float(eta_range[1])
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"eta_range must satisfy 0 < low <= high <= 1, got {eta_range}")
    v2v = video_to_video_pipeline(pipe)
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    records = []
    for i, row in enumerate(rows):
        for k in range(pairs_per_prompt):
            rng = np.random.default_rng([seed, i, k])
            eta = float(rng.uniform(lo, hi))
            source_seed = int(rng.integers(2**31))
            source = render_video(row, num_frames=num_frames, size=size, seed=source_seed)
            frames = [Image.fromarray(f) for f in source]
            noise_seeds = [int(s) for s in rng.integers(2**31, size=2)]
            result = v2v(video=[frames, frames], prompt=[row["prompt"]] * 2, strength=eta,
                         num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, height=size, width=size,
                         generator=[torch.Generator("cpu").manual_seed(s) for s in noise_seeds], output_type="np",
                         **sampling)
            clips = [np.clip(np.round(np.asarray(c, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
                     for c in result.frames]
            verdicts = [judge_video(c, row, num_segments=num_segments) for c in clips]
            names = [os.path.relpath(write_video(os.path.join(out, "videos", f"{i:05d}_{k:02d}_{j}.mp4"), c, fps=fps), out)
                     for j, c in enumerate(clips)]
            records.append({
                "caption": row["prompt"], "video_0": names[0], "video_1": names[1],
                "segment_labels": segment_preferences(verdicts[0], verdicts[1], margin),
                "eta": eta, "source_seed": source_seed, "noise_seeds": noise_seeds,
                "score_0": verdicts[0]["score"], "score_1": verdicts[1]["score"],
                "segments_0": verdicts[0]["segments"], "segments_1": verdicts[1]["segments"],
                "metadata": dict(row),
            })
    with open(os.path.join(out, "pairs.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return records
