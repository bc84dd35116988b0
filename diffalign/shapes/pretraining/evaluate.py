"""Held-out judge accuracy of a shapes pipeline, sampled exactly as ``diffalign demo`` does (a video
pipeline: moving-shapes prompts and the temporal judge, see :func:`evaluate_video_pipeline`).

    python -m diffalign.shapes.pretraining.evaluate PIPELINE_DIR [--per-category 20 --steps 20 --guidance 5]
"""
from __future__ import annotations

import argparse
import functools
import json
import time

from diffalign.shapes.prompts import sample_rows
from diffalign.shapes.vocab import CATEGORIES


def pipeline_caller(pipe, **fixed_kwargs):
    """``pipe`` with extra call arguments fixed (e.g. SD3's ``max_sequence_length``)."""
    return functools.partial(pipe, **fixed_kwargs) if fixed_kwargs else pipe


def evaluate_pipeline(
    pipe,
    per_category: int = 20,
    seed: int = 0,
    split: str = "test",
    num_inference_steps: int = 20,
    guidance_scale: float = 5.0,
    batch_size: int = 64,
    **call_kwargs,
) -> dict[str, float]:
    """GenEval-style summary (per-tag accuracy and ``overall``) of ``pipe`` on ``per_category`` rows
    per category of ``split``, generated with ``generate_for_rows`` at the given settings."""
    from diffalign.shapes.judge import judge_batch, summarize
    from diffalign.shapes.sampling import generate_for_rows

    rows = sample_rows(per_category * len(CATEGORIES), seed=seed, split=split)
    images = generate_for_rows(
        pipeline_caller(pipe, **call_kwargs), rows, num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale, seed=seed, batch_size=batch_size,
    )
    return summarize(rows, judge_batch(images, rows))


def evaluate_video_pipeline(
    pipe, per_category: int = 8, seed: int = 0, split: str = "test", num_inference_steps: int = 20,
    guidance_scale: float = 5.0, batch_size: int = 8, num_frames: int = 9, **call_kwargs,
) -> dict:
    """Temporal-judge summary (``summarize_video``: per-category accuracy and score, ``overall``,
    ``score``, temporal figures) of a video pipeline on ``sample_video_rows(per_category, seed,
    split)``; clip ``i``
    starts from ``seed`` (``generate``'s seeding)."""
    from diffalign.pipelines.generation import generate
    from diffalign.shapes.video import judge_video, sample_video_rows, summarize_video

    rows = sample_video_rows(per_category, seed, split)
    clips = generate(pipe, [r["prompt"] for r in rows], seed=seed, batch_size=batch_size, video=True,
                     num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, num_frames=num_frames,
                     **call_kwargs)
    return summarize_video(rows, [judge_video(c[0], r) for c, r in zip(clips, rows)])


def main(argv=None) -> dict:
    import torch
    from diffusers import DiffusionPipeline

    p = argparse.ArgumentParser(prog="python -m diffalign.shapes.pretraining.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("pipeline")
    p.add_argument("--per-category", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--max-sequence-length", type=int, default=None, help="SD3 only: T5 length")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = DiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    extra = {} if args.max_sequence_length is None else {"max_sequence_length": args.max_sequence_length}
    start = time.time()
    if type(pipe).__name__ == "CogVideoXPipeline":
        summary = evaluate_video_pipeline(pipe, args.per_category, args.seed, args.split, args.steps, args.guidance, **extra)
        summary = {"score": summary["score"], "overall": summary["overall"],
                   **{f"{tag}_score": c["score"] for tag, c in summary["categories"].items()},
                   **{f"temporal_{k}": v for k, v in summary["temporal"].items()}}
    else:
        summary = evaluate_pipeline(pipe, args.per_category, args.seed, args.split, args.steps, args.guidance, **extra)
    record = {"pipeline": args.pipeline, "split": args.split, "per_category": args.per_category, "seed": args.seed,
              "steps": args.steps, "guidance": args.guidance, **extra,
              **{k: round(v, 4) for k, v in summary.items()}, "wall_s": round(time.time() - start, 1)}
    print(json.dumps(record), flush=True)
    return record


if __name__ == "__main__":
    main()
