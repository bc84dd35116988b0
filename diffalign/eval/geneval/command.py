"""``diffalign eval geneval``: GenEval with a pluggable detector.

    diffalign eval geneval --pipeline PATH_OR_ID [--lora PATH] --metadata FILE --out DIR
                           [--detector NAME] [--images-per-prompt 4] [--steps 50] [--guidance 9] [--seed 42]
    diffalign eval geneval --images-only DIR --out DIR [--detector NAME]

Writes GenEval's folder layout (``DIR/00000/metadata.jsonl``, ``samples/0000.png``...), then
``DIR/results.jsonl``, ``DIR/summary.json``, ``DIR/report.html`` and ``DIR/report.md``.
"""
from __future__ import annotations

import argparse

from diffalign.geneval.rules import RULE_DEFAULTS
from diffalign.utils.dtypes import dtype_argument

# CLI flag -> judge() keyword (GenEval's own option names where it has one)
RULE_FLAGS = {
    "threshold": "threshold",
    "counting_threshold": "counting_threshold",
    "max_objects": "max_objects",
    "max_overlap": "max_overlap",
    "position_threshold": "position_margin",
    "position_cutoff": "position_cutoff",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("what to evaluate")
    src.add_argument("--pipeline", help="diffusers pipeline folder, hub id, or shapes-sd / shapes-sd3")
    src.add_argument("--lora", help="LoRA folder or .safetensors file loaded into the pipeline")
    src.add_argument("--revision", help="hub revision of --pipeline (branch, tag or commit), as from_pretrained(revision=...)")
    src.add_argument("--metadata", help="GenEval metadata jsonl (prompts and their rules)")
    src.add_argument("--images-only", metavar="DIR", help="judge a folder in GenEval's layout made elsewhere")
    src.add_argument("--limit", type=int, help="only the first N metadata rows (quick runs)")
    p.add_argument("--out", required=True, help="output folder (the images go here too when generating)")
    det = p.add_argument_group("detector")
    det.add_argument("--detector", default="auto",
                     help="shapes, mask2former, detr, owlv2, or a transformers model folder / hub id; "
                          "auto = shapes for shapes-world metadata, else mask2former (default)")
    det.add_argument("--color-classifier", default="auto", choices=["auto", "clip", "detector"],
                     help="auto = the detector's colours when it names them (shapes), else GenEval's CLIP classifier")
    det.add_argument("--clip-model", default="ViT-L-14", help="OpenCLIP architecture of the colour classifier")
    det.add_argument("--clip-pretrained", default="openai", help="OpenCLIP weights tag or local checkpoint file")
    gen = p.add_argument_group("generation (GenEval's defaults unless the pipeline ships its own settings)")
    gen.add_argument("--images-per-prompt", type=int, default=4)
    gen.add_argument("--steps", type=int, help="sampling steps (GenEval: 50)")
    gen.add_argument("--guidance", type=float, help="CFG scale (GenEval: 9.0)")
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--seed", type=int, default=42, help="image k of every prompt starts from seed + k")
    gen.add_argument("--batch-size", type=int, default=8)
    gen.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    gen.add_argument("--dtype", type=dtype_argument, help="pipeline dtype: fp16/float16, bf16/bfloat16, fp32/float32 (default: as saved)")
    rules = p.add_argument_group("GenEval's rule constants")
    for flag, key in RULE_FLAGS.items():
        kind = int if key == "max_objects" else float
        rules.add_argument(f"--{flag.replace('_', '-')}", type=kind, default=None, help=f"default {RULE_DEFAULTS[key]}")


def run(args: argparse.Namespace) -> int:
    from diffalign.eval.checks import check_lora, check_output_folder
    from diffalign.eval.geneval import job, layout
    from diffalign.geneval import read_metadata
    from diffalign.geneval.evaluator import GenEvalEvaluator, auto_detector

    if args.images_only:
        if args.pipeline or args.metadata:
            raise SystemExit("--images-only judges an existing folder: do not also pass --pipeline / --metadata")
        rows = [f.row for f in layout.scan(args.images_only)]
    else:
        if not (args.pipeline and args.metadata):
            raise SystemExit("give --pipeline and --metadata (or --images-only DIR)")
        rows = read_metadata(args.metadata)[: args.limit]
    check_output_folder(args.out)
    check_lora(args.lora)
    rule_options = {key: getattr(args, flag) for flag, key in RULE_FLAGS.items() if getattr(args, flag) is not None}
    detector = auto_detector(rows) if args.detector == "auto" else args.detector
    detector_options = {"device": args.device} if detector != "shapes" and args.device else {}
    clip_options = {"model": args.clip_model, "pretrained": args.clip_pretrained, "device": args.device}
    evaluator = GenEvalEvaluator(detector, args.color_classifier, rule_options, detector_options, clip_options)
    evaluator.prepare(rows)  # the detector is loaded; the colour classifier too when the rows need it
    if args.images_only:
        summary = job.run(args.out, evaluator, images_dir=args.images_only, batch_size=args.batch_size)
    else:
        from diffalign.pipelines.generation import PipelineSpec, load_pipeline_spec, sampling_settings

        spec = PipelineSpec(args.pipeline, args.lora, args.revision)
        sampling = sampling_settings(spec.pipeline, job.GENEVAL_SAMPLING, num_inference_steps=args.steps,
                                     guidance_scale=args.guidance, height=args.height, width=args.width)
        pipe = load_pipeline_spec(spec, device=args.device, dtype=args.dtype)
        info = {"generation": {"pipeline": spec.pipeline, "lora": spec.lora, "metadata": args.metadata}}
        summary = job.run(args.out, evaluator, rows=rows, pipe=pipe, images_per_prompt=args.images_per_prompt,
                          seed=args.seed, batch_size=args.batch_size, sampling=sampling, info=info)
    print(format_summary(summary))
    print(f"wrote {args.out}/results.jsonl, summary.json, report.html, report.md")
    return 0


def format_summary(summary: dict) -> str:
    """GenEval's printout: totals, task breakdown, overall."""
    lines = [summary["label"], f"images {summary['images']}, prompts {summary['prompts']}",
             f"% correct images: {100 * summary['correct_images']:.2f}%",
             f"% correct prompts: {100 * summary['correct_prompts']:.2f}%"]
    for tag, score in summary["per_tag"].items():
        c, n = summary["per_tag_counts"][tag]
        lines.append(f"{tag:<16} = {100 * score:.2f}% ({c} / {n})")
    lines.append(f"Overall score (avg. over tasks): {summary['overall']:.5f}")
    return "\n".join(lines)
