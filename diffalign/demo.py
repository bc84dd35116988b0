"""The main job on the embedded default: align ``shapes-sd`` with Diffusion-DPO from AI feedback.

1. run the GenEval job (shapes detector, GenEval's rules) on held-out shapes prompts (before);
2. sample it on training prompts, let the shapes judge label pairs (correct beats incorrect);
3. train a Diffusion-DPO LoRA on those pairs with the offline trainer (recipe ``shapes_dpo``);
4. load the LoRA into a plain diffusers pipeline and run the GenEval job again (after).

Writes to ``OUT`` (default ``outputs/demo``): ``summary.json`` (before/after per category),
``before_after.png`` (held-out images framed green/red by the judge), ``training.png`` (loss and
implicit accuracy), ``geneval_before/`` and ``geneval_after/`` (GenEval's folder layout,
``results.jsonl``, ``summary.json``, HTML/Markdown reports), ``pairs/`` (the AI-feedback data set),
``dpo/`` (the LoRA, logs, checkpoints).
``--eval-only`` stops after step 1. ``diffalign demo video``: the same on the moving-shapes world
(``diffalign/demo_video.py``, which is the ``demo`` command's entry point and sends the image demo here).
"""
from __future__ import annotations

import argparse
import json
import os
import time

DEFAULT_OUT = os.path.join("outputs", "demo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", default="sd", choices=["sd", "sd3", "flux2"], help="which shipped shapes pipeline")
    p.add_argument("--out", default=None, help=f"output folder (default: {DEFAULT_OUT}; video: outputs/demo-video)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-images-per-category", type=int, default=64,
                   help="held-out images judged per category, spread over up to a quarter as many held-out prompts "
                        "(a category with few held-out prompts gets more images of each)")
    p.add_argument("--train-prompts", type=int, default=192, help="training prompts sampled for AI feedback")
    p.add_argument("--train-categories", default=None,
                   help="comma-separated GenEval categories the AI-feedback prompts are drawn from (default: all six; "
                        "the held-out evaluation always covers all six)")
    p.add_argument("--images-per-prompt", type=int, default=8, help="samples per training prompt to pair up")
    p.add_argument("--max-pairs-per-prompt", type=int, default=4,
                   help="(correct, incorrect) pairs kept per training prompt")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's shipped setting)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the shipped setting)")
    p.add_argument("--batch-size", type=int, default=64, help="sampling batch size")
    p.add_argument("--recipe", default=None, help="training recipe (default: shapes_dpo; video: per --method)")
    p.add_argument("--eval-only", action="store_true", help="only judge the base pipeline")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    p.add_argument("overrides", nargs="*",
                   help="key=value overrides of the training recipe; 'video' first runs the video demo")


def run(args: argparse.Namespace) -> int:
    import torch
    from diffusers import DiffusionPipeline

    from diffalign import shapes
    from diffalign.shapes.sampling import sampling_defaults

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    t0 = time.time()
    try:
        path = shapes.pretrained_path(args.family)
    except FileNotFoundError as e:
        print(f"diffalign demo: {e}\n(see docs/shapes.md, 'Pretrained pipelines', for the training status)")
        return 1
    settings = sampling_defaults(path)
    sampling = {  # the shipped settings (SD3: also its max_sequence_length), then the command line's
        **settings,
        "num_inference_steps": args.steps or settings["num_inference_steps"],
        "guidance_scale": settings["guidance_scale"] if args.guidance is None else args.guidance,
        "batch_size": args.batch_size,
    }
    args.out, args.recipe = args.out or DEFAULT_OUT, args.recipe or "shapes_dpo"
    os.makedirs(args.out, exist_ok=True)
    eval_rows, eval_counts = held_out_plan(args.eval_images_per_category, seed=args.seed)
    job_args = {"images_per_prompt": eval_counts, "seed": args.seed, "batch_size": args.batch_size,
                "sampling": {k: v for k, v in sampling.items() if k != "batch_size"}}

    base = load_pipeline(DiffusionPipeline, path)
    print(f"shapes-{args.family}: GenEval job on {len(eval_rows)} held-out prompts, {sum(eval_counts)} images "
          f"({sampling['num_inference_steps']} steps, guidance {sampling['guidance_scale']})")
    before = _geneval(os.path.join(args.out, "geneval_before"), base, eval_rows, f"shapes-{args.family}", job_args)
    report = {"pipeline": f"shapes-{args.family}", "sampling": sampling, "seed": args.seed,
              "eval_prompts": len(eval_rows), "eval_images": before["images"], "before": _scores(before)}
    if args.eval_only:
        _write_grid(os.path.join(args.out, "before.png"), before, None)
        save_json(os.path.join(args.out, "summary.json"), report)
        print(format_scores({"base": report["before"]}))
        print(f"wrote {args.out} in {time.time() - t0:.0f}s")
        return 0

    # 2. AI feedback on training prompts
    from diffalign.data import write_pairs_jsonl
    from diffalign.shapes.feedback import judged_pairs

    train_rows = feedback_rows(args.train_prompts, args.seed, args.train_categories)
    feedback = judged_pairs(base, train_rows, images_per_prompt=args.images_per_prompt,
                            max_pairs_per_prompt=args.max_pairs_per_prompt, seed=args.seed + 1,
                            **{k: v for k, v in sampling.items()})
    if not feedback.pairs:
        raise RuntimeError("the judge found no (correct, incorrect) pair among the samples; raise --train-prompts")
    pairs_dir = os.path.join(args.out, "pairs")
    write_pairs_jsonl(pairs_dir, feedback.pairs, overwrite=True)  # the demo owns its folder
    print(f"AI feedback: {len(feedback.pairs)} pairs from {len(train_rows)} training prompts "
          f"(base accuracy on them {feedback.accuracy:.3f}) [{time.time() - t0:.0f}s]")

    # 3. Diffusion-DPO LoRA with the offline trainer
    from diffalign.config import load_config
    from diffalign.train.offline import OfflineConfig, OfflinePreferenceTrainer
    from diffalign.train_command import recipe_path

    dpo_dir = os.path.join(args.out, "dpo")
    # the demo owns its output folder: a second `make demo` replaces the previous demo's LoRA run
    overrides = [f"output_dir={dpo_dir}", f"data.path={pairs_dir}", f"model.pretrained=shapes-{args.family}",
                 f"seed={args.seed}", f"cache.dir={os.path.join(args.out, 'cache')}", "overwrite=true",
                 *args.overrides]
    cfg = load_config(OfflineConfig, recipe_path(args.recipe), overrides)
    result = OfflinePreferenceTrainer(cfg).train()
    print(f"trained {cfg.method} for {cfg.max_steps} steps [{time.time() - t0:.0f}s]")

    # 4. the LoRA in a plain diffusers pipeline, same held-out prompts and seeds
    tuned = load_pipeline(DiffusionPipeline, path)
    tuned.load_lora_weights(result.output_dir)
    after = _geneval(os.path.join(args.out, "geneval_after"), tuned, eval_rows, f"shapes-{args.family}+dpo", job_args)
    report.update({"after": _scores(after), "pairs": len(feedback.pairs), "method": cfg.method,
                   "train_steps": cfg.max_steps, "seconds": round(time.time() - t0, 1)})
    save_json(os.path.join(args.out, "summary.json"), report)
    _write_grid(os.path.join(args.out, "before_after.png"), before, after)
    plot_training(result.metrics_path, os.path.join(args.out, "training.png"))
    print(format_scores({"before": report["before"], "after": report["after"]}))
    print("GenEval reports (GenEval protocol, detector=shapes): "
          f"{args.out}/geneval_before/report.html, {args.out}/geneval_after/report.html")
    print(f"wrote {args.out}/summary.json, before_after.png, training.png in {time.time() - t0:.0f}s")
    return 0


def load_pipeline(cls, path, channels_last: bool = True):
    from diffalign.pipelines.models import use_channels_last

    pipe = cls.from_pretrained(path)
    if channels_last:  # 2D convolutions only
        use_channels_last(pipe)  # same images, ~20 % faster convolutions on CPU
    pipe.set_progress_bar_config(disable=True)
    return pipe


def feedback_rows(n: int, seed: int, categories: str | None = None) -> list[dict]:
    """The demo's ``n`` AI-feedback prompts: training-split rows balanced over ``categories`` (a
    comma-separated string of GenEval categories; default all six), drawn with ``seed + 1``."""
    from diffalign import shapes

    cats = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    return shapes.sample_rows(n, seed=seed + 1, categories=cats, split="train")


def held_out_plan(images_per_category: int, seed: int = 0, min_images_per_prompt: int = 4) -> tuple[list[dict], list[int]]:
    """Held-out rows and images per row: about ``images_per_category`` images for every category.

    Each category takes up to ``images_per_category // min_images_per_prompt`` distinct prompts of its
    test split (a seeded choice) and spreads the images evenly over them, so a category with one
    held-out prompt is judged on as many images as one with hundreds and the per-category scores
    (GenEval's overall is their mean) are equally precise.
    """
    import math

    import numpy as np

    from diffalign import shapes

    if images_per_category < 1:
        raise ValueError(f"images_per_category must be >= 1, got {images_per_category}")
    rows: list[dict] = []
    counts: list[int] = []
    rng = np.random.default_rng(seed)
    for tag in shapes.CATEGORIES:
        pool = shapes.split_rows("test", [tag])
        n = max(1, min(len(pool), images_per_category // min_images_per_prompt))
        take = sorted(rng.permutation(len(pool))[:n])
        rows.extend(pool[i] for i in take)
        counts.extend([math.ceil(images_per_category / n)] * n)
    return rows, counts


def _geneval(out: str, pipe, rows, name: str, job_args: dict) -> dict:
    """The GenEval job with the shapes detector; returns its summary plus the per-image results."""
    from diffalign.eval.geneval import job
    from diffalign.geneval.evaluator import GenEvalEvaluator

    summary = job.run(fresh_dir(out), GenEvalEvaluator("shapes"), rows=rows, pipe=pipe, info={"pipeline": name},
                      log=lambda msg: None, **job_args)
    with open(os.path.join(out, "results.jsonl"), encoding="utf-8") as f:
        summary["results"] = [json.loads(line) for line in f]
    return summary


def fresh_dir(path: str) -> str:
    """``path``, emptied when it exists: a re-run of a demo regenerates the folders it owns."""
    if os.path.isdir(path):
        import shutil

        shutil.rmtree(path)
    return path


def _scores(summary: dict) -> dict:
    return {**summary["per_tag"], "overall": summary["overall"]}


def _write_grid(path: str, before: dict, after: dict | None) -> None:
    from PIL import Image

    from diffalign.utils.images import make_grid

    grids = []
    for name, summary in (("before", before), ("after", after)):
        if summary is None:
            continue
        results = summary["results"]
        images = [Image.open(r["filename"]).convert("RGB") for r in results]
        captions = [r["prompt"].removeprefix("a photo of ") for r in results]
        grids.append(make_grid(images, captions=captions, verdicts=[bool(r["correct"]) for r in results],
                               ncols=16, scale=2, title=f"{name}: overall {summary['overall']:.3f}"))
    canvas = Image.new("RGB", (max(g.width for g in grids), sum(g.height for g in grids) + 10 * (len(grids) - 1)), "white")
    y = 0
    for g in grids:
        canvas.paste(g, (0, y))
        y += g.height + 10
    canvas.save(path)


def plot_training(metrics_path: str, out_path: str, keys: tuple[str, str] = ("loss", "implicit_acc")) -> None:
    """Two panels of a run's logged ``keys`` against the step (raw and smoothed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffalign.train.metrics import read_metrics

    rows = read_metrics(metrics_path)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key in zip(axes, keys):
        values = [r.get(key) for r in rows if r.get(key) is not None]
        steps = [r["step"] for r in rows if r.get(key) is not None]
        ax.plot(steps, values, lw=0.8, alpha=0.5)
        if len(values) >= 10:
            k = max(1, len(values) // 20)
            smooth = [sum(values[max(0, i - k): i + 1]) / len(values[max(0, i - k): i + 1]) for i in range(len(values))]
            ax.plot(steps, smooth, lw=2)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def save_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


def format_scores(columns: dict[str, dict], rows=None) -> str:
    """Per-category table with one column per run (and the change when there are two); ``rows``:
    the keys shown, in order (default: GenEval's six categories and ``overall``)."""
    from diffalign.shapes.vocab import CATEGORIES

    names = list(columns)
    header = f"{'category':<15}" + "".join(f"{n:>10}" for n in names) + ("    change" if len(names) == 2 else "")
    lines = [header]
    for tag in rows or [*CATEGORIES, "overall"]:
        if not all(tag in c for c in columns.values()):
            continue
        vals = [columns[n][tag] for n in names]
        line = f"{tag:<15}" + "".join(f"{v:>10.3f}" for v in vals)
        if len(vals) == 2:
            line += f"{vals[1] - vals[0]:>+10.3f}"
        lines.append(line)
    return "\n".join(lines)
