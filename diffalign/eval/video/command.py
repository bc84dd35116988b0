"""``diffalign eval video``: moving-shapes prompts, the temporal judge, mp4s and a report.

    diffalign eval video --pipeline PATH_OR_ID [--lora PATH] --out DIR [--split test | --metadata FILE]
                         [--categories motion,passing] [--videos-per-prompt 1] [--num-frames 9] [--seed 42]

Writes ``DIR/videos/<prompt:05d>_<k:02d>.mp4`` (GIF without ffmpeg), ``DIR/results.jsonl`` (verdict,
score, per-segment scores and temporal figures per clip), ``DIR/summary.json`` (per-category accuracy
and score, ``overall`` = mean of the category accuracies, mean temporal figures), ``DIR/report.html``
(clips playing in ``<video>`` elements) and ``DIR/report.md``.
"""
from __future__ import annotations

import argparse
import json

from diffalign.eval.arguments import add_sampling_arguments
from diffalign.utils.dtypes import dtype_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", required=True, help="diffusers video pipeline folder or hub id")
    p.add_argument("--lora", help="LoRA folder or .safetensors file loaded into the pipeline")
    p.add_argument("--revision", help="hub revision of --pipeline (branch, tag or commit), as from_pretrained(revision=...)")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test", choices=["train", "test"], help="moving-shapes prompt split (default test)")
    p.add_argument("--metadata", help="a jsonl of moving-shapes rows instead of --split")
    p.add_argument("--categories", help="comma-separated categories (default: all)")
    p.add_argument("--limit", type=int, help="only the first N rows (quick runs)")
    p.add_argument("--videos-per-prompt", type=int, default=1)
    p.add_argument("--num-frames", type=int, help="frames per clip (default 9)")
    add_sampling_arguments(p)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--segments", type=int, default=3, help="frame windows scored separately (DenseDPO segments)")
    p.add_argument("--seed", type=int, default=42, help="clip k of every prompt starts from seed + k")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device")
    p.add_argument("--dtype", type=dtype_argument)


def run(args: argparse.Namespace) -> int:
    from diffalign.eval.checks import check_lora, check_output_folder
    from diffalign.eval.video import job
    from diffalign.pipelines.generation import PipelineSpec, load_pipeline_spec, sampling_settings
    from diffalign.shapes.video import video_prompts

    categories = [c.strip() for c in args.categories.split(",")] if args.categories else None
    if args.metadata:
        with open(args.metadata, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if categories:
            rows = [r for r in rows if r.get("tag") in categories]
    else:
        rows = video_prompts(args.split, categories)
    rows = rows[: args.limit]
    if not rows:
        raise SystemExit("no prompts to evaluate (check --split / --metadata / --categories / --limit)")
    check_output_folder(args.out)
    check_lora(args.lora)
    spec = PipelineSpec(args.pipeline, args.lora, args.revision)
    sampling = sampling_settings(spec.pipeline, job.VIDEO_SAMPLING, num_inference_steps=args.steps, guidance_scale=args.guidance,
                                 height=args.height, width=args.width, num_frames=args.num_frames)
    pipe = load_pipeline_spec(spec, device=args.device, dtype=args.dtype)
    info = {"generation": {"pipeline": spec.pipeline, "lora": spec.lora, "split": None if args.metadata else args.split,
                           "metadata": args.metadata, **sampling}}
    summary = job.run(args.out, rows, pipe, videos_per_prompt=args.videos_per_prompt, seed=args.seed,
                      batch_size=args.batch_size, sampling=sampling, fps=args.fps, num_segments=args.segments, info=info)
    print(job.format_summary(summary))
    print(f"wrote {args.out}/videos, results.jsonl, summary.json, report.html, report.md")
    return 0
