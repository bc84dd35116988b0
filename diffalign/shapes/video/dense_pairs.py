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

    v2v = getattr(diffusers, VIDEO_TO_VIDEO[name])(**pipe.components)
    v2v.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return v2v


def make_dense_pairs(
    pipe,
    rows: Sequence[Mapping],
    out: str,
    *,
    pairs_per_prompt: int = 1,
    samples_per_prompt: int = 2,
    eta_range: tuple[float, float] = ETA_RANGE,
    num_frames: int = DEFAULT_FRAMES,
    size: int = DEFAULT_SIZE,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.0,
    num_segments: int = 3,
    margin: float = 0.0,
    seed: int = 0,
    fps: int = DEFAULT_FPS,
    max_pairs: int | None = None,
    **sampling,
) -> list[dict]:
    """Make, label and write DenseDPO pairs (see the module docstring); returns the written records.
    ``max_pairs``: stop once that many pairs with at least one non-tie segment are made (all-tie
    pairs are kept in the file but not counted), so runs can be compared at equal labelled pairs.
    ``samples_per_prompt``: copies of the source denoised per pair, all at the pair's one ``eta``; with
    more than 2, the copy the judge scores best is paired against the one it scores worst (whole-clip
    scores; the record's ``scores`` lists all of them), and the pair is labelled per segment as usual."""
    import torch
    from PIL import Image

    lo, hi = float(eta_range[0]), float(eta_range[1])
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"eta_range must satisfy 0 < low <= high <= 1, got {eta_range}")
    n = _group_size(samples_per_prompt)
    v2v = video_to_video_pipeline(pipe)
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    records = []
    for i, row in enumerate(rows):
        if max_pairs is not None and labelled_pairs(records) >= max_pairs:
            break
        for k in range(pairs_per_prompt):
            rng = np.random.default_rng([seed, i, k])
            eta = float(rng.uniform(lo, hi))
            source_seed = int(rng.integers(2**31))
            source = render_video(row, num_frames=num_frames, size=size, seed=source_seed)
            frames = [Image.fromarray(f) for f in source]
            noise_seeds = [int(s) for s in rng.integers(2**31, size=n)]
            result = v2v(video=[frames] * n, prompt=[row["prompt"]] * n, strength=eta,
                         num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, height=size, width=size,
                         generator=[torch.Generator("cpu").manual_seed(s) for s in noise_seeds], output_type="np",
                         **sampling)
            clips = [np.clip(np.round(np.asarray(c, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
                     for c in result.frames]
            records.append(best_against_worst(out, f"{i:05d}_{k:02d}", clips, row, num_segments, margin, fps,
                                              noise_seeds, eta=eta, source_seed=source_seed))
    write_jsonl(os.path.join(out, "pairs.jsonl"), records)
    return records


def _group_size(samples_per_prompt) -> int:
    n = int(samples_per_prompt)
    if n < 2:
        raise ValueError(f"samples_per_prompt must be at least 2 (a pair), got {samples_per_prompt}")
    return n


def best_against_worst(out: str, stem: str, clips, row: Mapping, num_segments: int, margin: float, fps: int,
                       noise_seeds: Sequence[int], **extra) -> dict:
    """The pair record (:func:`judged_pair_record`) of ``clips`` drawn for one pair: two clips are the pair as drawn;
    of more, all are judged and the best-scored is paired against the worst-scored (``scores``: all of them;
    ``noise_seeds``: the two kept clips' seeds). All-tie groups give a tie record of the first two."""
    if len(clips) == 2:
        return judged_pair_record(out, stem, clips, row, num_segments, margin, fps, noise_seeds=list(noise_seeds),
                                  **extra)
    verdicts = [judge_video(c, row, num_segments=num_segments) for c in clips]
    scores = [v["score"] for v in verdicts]
    best, worst = int(np.argmax(scores)), int(np.argmin(scores))
    if best == worst:
        best, worst = 0, 1
    return judged_pair_record(out, stem, [clips[best], clips[worst]], row, num_segments, margin, fps,
                              verdicts=[verdicts[best], verdicts[worst]],
                              noise_seeds=[int(noise_seeds[best]), int(noise_seeds[worst])], scores=scores, **extra)


def labelled_pairs(records: Sequence[Mapping]) -> int:
    """How many of ``records`` carry a preference: a non-tie segment (or ``label_0`` other than 0.5)."""
    return sum(1 for r in records if any(r["segment_labels"]) or r.get("label_0", 0.5) != 0.5)


def judged_pair_record(out: str, stem: str, clips, row: Mapping, num_segments: int, margin: float, fps: int,
                       verdicts: Sequence[Mapping] | None = None, **extra) -> dict:
    """Judge two clips of ``row``, write them to ``out/videos/<stem>_{0,1}.mp4`` and return the pair's
    record: ``caption``, ``video_0``/``video_1`` (relative to ``out``), ``segment_labels``
    (:func:`segment_preferences`), ``label_0`` (1 / 0 / 0.5: the whole-clip scores compared with
    ``margin``), scores, segment scores, ``extra`` and the row as ``metadata``. ``verdicts``: the clips'
    judge verdicts when already computed."""
    if verdicts is None:
        verdicts = [judge_video(c, row, num_segments=num_segments) for c in clips]
    names = [os.path.relpath(write_video(os.path.join(out, "videos", f"{stem}_{j}.mp4"), c, fps=fps), out)
             for j, c in enumerate(clips)]
    gap = verdicts[0]["score"] - verdicts[1]["score"]
    return {
        "caption": row["prompt"], "video_0": names[0], "video_1": names[1],
        "segment_labels": segment_preferences(verdicts[0], verdicts[1], margin),
        "label_0": 1.0 if gap > margin else 0.0 if gap < -margin else 0.5,
        **extra,
        "score_0": verdicts[0]["score"], "score_1": verdicts[1]["score"],
        "segments_0": verdicts[0]["segments"], "segments_1": verdicts[1]["segments"],
        "metadata": dict(row),
    }


def write_jsonl(path: str, records: Sequence[Mapping]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def make_sampled_pairs(
    pipe,
    rows: Sequence[Mapping],
    out: str,
    *,
    pairs_per_prompt: int = 1,
    samples_per_prompt: int = 2,
    num_frames: int = DEFAULT_FRAMES,
    size: int = DEFAULT_SIZE,
    num_inference_steps: int = 20,
    guidance_scale: float = 5.0,
    num_segments: int = 3,
    margin: float = 0.0,
    seed: int = 0,
    fps: int = DEFAULT_FPS,
    max_pairs: int | None = None,
    batch_size: int = 8,
    **sampling,
) -> list[dict]:
    """Plain video Diffusion-DPO pairs, the baseline DenseDPO is compared with: clips generated from
    scratch with independent noise (text-to-video), labelled as whole clips by the judge's scores
    (``label_0``; ties are 0.5 and dropped by the pair data set). ``samples_per_prompt`` clips are
    drawn per pair (2: the two clips are the pair); with more, all are judged and the best-scored one
    is paired against the worst-scored one (best-vs-worst of N, the on-policy pair selection of
    self-rewarding and online DPO), which makes each label a larger, surer gap; the record's
    ``scores`` lists all N scores. Written like :func:`make_dense_pairs` (``pairs.jsonl`` also carries
    ``segment_labels``); ``max_pairs`` counts non-tie pairs. Train with ``data: {kind: pairs, media:
    video, columns: {image_0: video_0, image_1: video_1, label_0: label_0}}``."""
    import torch

    n = _group_size(samples_per_prompt)
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    jobs = [(i, k) for i in range(len(rows)) for k in range(pairs_per_prompt)]
    step = max(1, batch_size // n)
    records = []
    for start in range(0, len(jobs), step):
        if max_pairs is not None and labelled_pairs(records) >= max_pairs:
            break
        chunk = jobs[start : start + step]
        seeds = [int(s) for i, k in chunk for s in np.random.default_rng([seed, i, k]).integers(2**31, size=n)]
        result = pipe(prompt=[rows[i]["prompt"] for i, _ in chunk for _ in range(n)], num_frames=num_frames,
                      num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, height=size, width=size,
                      generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], output_type="np", **sampling)
        clips = [np.clip(np.round(np.asarray(c, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8) for c in result.frames]
        for m, (i, k) in enumerate(chunk):
            if max_pairs is not None and labelled_pairs(records) >= max_pairs:
                break  # the batch's remaining clips are dropped: equal labelled pairs for a comparison
            records.append(best_against_worst(out, f"{i:05d}_{k:02d}", clips[n * m : n * m + n], rows[i], num_segments,
                                              margin, fps, seeds[n * m : n * m + n]))
    write_jsonl(os.path.join(out, "pairs.jsonl"), records)
    return records
