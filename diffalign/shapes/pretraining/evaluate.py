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


def torch_no_grad_lazy(fn):
    """``fn`` run under ``torch.no_grad()`` (torch imported at call time, as the CLI does)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapped


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


@torch_no_grad_lazy
def vae_reconstruction_score(vae, per_category: int = 6, seed: int = 0, split: str = "test", num_frames: int = 9,
                             size: int = 32, batch_size: int = 8) -> dict:
    """Temporal-judge summary (``summarize_video``) of ``vae``'s reconstructions (decode of the
    posterior mode) of ground-truth clips of ``sample_video_rows(per_category, seed, split)``, each
    rendered with ``render_video(row, num_frames, size, seed=seed + i)``: the ceiling that the VAE
    puts on any denoiser trained in its latent space (ground-truth clips score 1)."""
    import numpy as np
    import torch

    from diffalign.shapes.pretraining.data import clips_to_tensor
    from diffalign.shapes.video import judge_video, render_video, sample_video_rows, summarize_video

    rows = sample_video_rows(per_category, seed, split)
    dtype = next(vae.parameters()).dtype
    results = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        clips = [render_video(r, num_frames=num_frames, size=size, seed=seed + start + i) for i, r in enumerate(chunk)]
        x = clips_to_tensor(clips).to(dtype)
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.float()  # [B, 3, T, H, W] in [-1, 1]
        frames = ((recon.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()
        results.extend(judge_video(np.ascontiguousarray(f), r) for f, r in zip(frames, chunk))
    return summarize_video(rows, results)


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
    p.add_argument("--max-sequence-length", type=int, default=None,
                   help="T5 length (SD3, CogVideoX; default: the folder's recorded one, else the pipeline's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vae", action="store_true",
                   help="video pipelines: judge the VAE's reconstructions of ground-truth clips instead of samples")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.vae:
        from diffusers import AutoModel

        from diffalign.pipelines.generation import read_sampling_file

        vae = AutoModel.from_pretrained(args.pipeline, subfolder="vae", torch_dtype=torch.float32).eval()
        size = read_sampling_file(args.pipeline).get("height") or vae.config.sample_height
        start = time.time()
        summary = vae_reconstruction_score(vae, args.per_category, args.seed, args.split, size=size)
        record = {"pipeline": args.pipeline, "vae_reconstructions": True, "split": args.split,
                  "per_category": args.per_category, "seed": args.seed, "score": round(summary["score"], 4),
                  "overall": round(summary["overall"], 4),
                  **{f"{tag}_score": round(c["score"], 4) for tag, c in summary["categories"].items()},
                  "wall_s": round(time.time() - start, 1)}
        print(json.dumps(record), flush=True)
        return record
    pipe = DiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    from diffalign.pipelines.generation import is_video_pipeline, read_sampling_file

    tokens = args.max_sequence_length or read_sampling_file(args.pipeline).get("max_sequence_length")
    extra = {} if tokens is None else {"max_sequence_length": int(tokens)}
    start = time.time()
    if is_video_pipeline(pipe):
        recorded = read_sampling_file(args.pipeline)  # a Wan transformer records no clip size; its folder does
        extra.update({k: int(recorded[k]) for k in ("height", "width") if recorded.get(k)})
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
