"""``diffalign eval hps``: the HPSv2 benchmark (tgxs002/HPSv2).

    diffalign eval hps --pipeline PATH_OR_ID [--lora PATH] --prompts DIR --out DIR [--reward hpsv2 hpsv2.1]
    diffalign eval hps --images DIR --prompts DIR --out DIR

``--prompts DIR`` holds the benchmark's four style files, ``anime.json``, ``concept-art.json``,
``paintings.json`` and ``photo.json`` (JSON lists of 800 prompts, from the ``zhwang/HPDv2`` dataset's
``benchmark/`` folder; ``.txt`` files with one prompt per line work too). One image per prompt is
generated and saved as ``DIR/images/<style>/<index:05d>.jpg`` (the benchmark's layout; ``--images``
evaluates such a folder made elsewhere). Scoring follows the benchmark: HPS = cos(image, prompt) x 100;
per style, the mean of the means of consecutive chunks of 80 images (the plain mean for 800
prompts) and the standard deviation of those chunk means; the average is the mean over all images.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Mapping, Sequence

import numpy as np

from diffalign.utils.dtypes import dtype_argument

STYLES = ("anime", "concept-art", "paintings", "photo")
CHUNK = 80
"""The benchmark averages scores in consecutive chunks of 80 prompts."""


def read_style_prompts(folder: str, styles: Sequence[str] = STYLES) -> dict[str, list[str]]:
    """``{style: [prompt, ...]}`` from ``<folder>/<style>.json`` (or ``.txt``)."""
    from diffalign.eval.prompts import read_prompt_file

    out = {}
    for style in styles:
        candidates = [os.path.join(folder, style + ext) for ext in (".json", ".txt")]
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            raise FileNotFoundError(
                f"{folder} has no {style}.json: the HPSv2 benchmark prompts are the files benchmark/{{{','.join(STYLES)}}}.json "
                "of the HF dataset zhwang/HPDv2 (download them where you have network access)"
            )
        out[style] = [r["prompt"] for r in read_prompt_file(path)]
    return out


def style_score(scores: Sequence[float], chunk: int = CHUNK) -> tuple[float, float]:
    """(score, std) for one style as the benchmark prints them: x100, mean and std of chunk means."""
    values = np.asarray(scores, dtype=np.float64) * 100.0
    if not len(values):
        raise ValueError("no scores for this style")
    means = [values[i : i + chunk].mean() for i in range(0, len(values), chunk)]
    return float(np.mean(means)), float(np.std(means))


def summarize(scores: Mapping[str, Mapping[str, Sequence[float]]]) -> dict:
    """``{reward: {style: [raw score, ...]}}`` -> per reward: ``styles`` {style: {score, std, images}}
    and ``average`` (x100 mean over all images of all styles)."""
    out = {}
    for reward, per_style in scores.items():
        styles = {}
        for style, values in per_style.items():
            s, sd = style_score(values)
            styles[style] = {"score": s, "std": sd, "images": len(values)}
        every = [v for values in per_style.values() for v in values]
        out[reward] = {"styles": styles, "average": 100.0 * float(np.mean(every))}
    return out


def image_path(root: str, style: str, index: int) -> str:
    return os.path.join(root, style, f"{index:05d}.jpg")


def generate_images(pipe, prompts: Mapping[str, Sequence[str]], root: str, *, seed: int, batch_size: int, **sampling) -> None:
    """One image per prompt into ``<root>/<style>/<index:05d>.jpg`` (JPEG quality 95)."""
    from diffalign.pipelines.generation import generate

    for style, texts in prompts.items():
        os.makedirs(os.path.join(root, style), exist_ok=True)

        def save(done, style=style):
            for i, _, image in done:
                image.convert("RGB").save(image_path(root, style, i), quality=95)

        generate(pipe, list(texts), images_per_prompt=1, seed=seed, batch_size=batch_size, on_batch=save, **sampling)


def score_folder(root: str, prompts: Mapping[str, Sequence[str]], rewards: Mapping[str, object], batch_size: int = 16):
    """``(scores, records)``: ``{reward: {style: [score]}}`` and one record per image. Missing images
    are skipped with a warning, as the benchmark does."""
    from PIL import Image

    from diffalign.eval.scoring import score_images

    scores = {name: {} for name in rewards}
    records = []
    for style, texts in prompts.items():
        present = [(i, p) for i, p in enumerate(texts) if os.path.isfile(image_path(root, style, i))]
        if len(present) < len(texts):
            print(f"warning: {style}: {len(texts) - len(present)} of {len(texts)} images missing in {root}; skipped")
        if not present:
            raise FileNotFoundError(f"no images for style {style} in {os.path.join(root, style)}")
        images = []
        for i, _ in present:
            with Image.open(image_path(root, style, i)) as im:
                images.append(im.convert("RGB"))
        texts = [p for _, p in present]
        per_reward = {name: score_images(r, images, texts, batch_size=batch_size) for name, r in rewards.items()}
        for name in rewards:
            scores[name][style] = per_reward[name]
        for j, (i, p) in enumerate(present):
            records.append({"style": style, "index": i, "prompt": p, "file": image_path(root, style, i),
                            "scores": {name: per_reward[name][j] for name in rewards}})
    return scores, records


def _tile(rec: Mapping, reward: str):
    from diffalign.eval.report import GalleryItem

    return GalleryItem(rec["file"], rec["prompt"], None, f"{rec['style']} · {100 * rec['scores'][reward]:.2f}")


def write_report(out: str, summary: dict, records: Sequence[Mapping], examples: int = 8) -> None:
    """``out/report.html`` and ``out/report.md``: score table, a chart per reward, best and worst images."""
    from diffalign.eval.report import Report, bar_chart

    report = Report(f"HPSv2 benchmark: {summary.get('pipeline') or summary['images_dir']}",
                    f"{len(records)} images, one per prompt; HPS x 100")
    report.heading("Scores")
    scores = summary["scores"]
    rewards = list(scores)
    styles = list(scores[rewards[0]]["styles"]) if rewards else []
    rows = [[s, *(f"{scores[r]['styles'][s]['score']:.2f} ± {scores[r]['styles'][s]['std']:.2f}" for r in rewards)]
            for s in styles]
    rows.append(["average", *(f"{scores[r]['average']:.2f}" for r in rewards)])
    report.table(["style", *rewards], rows)
    report.paragraph("Per style: mean of the means of chunks of 80 prompts (± their standard deviation), as the "
                     "benchmark prints it; average: mean over all images. v2.0 and v2.1 scores are not comparable.")
    for r in rewards:
        values = {s: scores[r]["styles"][s]["score"] for s in styles}
        values["average"] = scores[r]["average"]
        ylim = (min(values.values()) - 3, max(values.values()) + 1.5)
        report.figure(bar_chart(values, title=r, ylabel="HPS x 100", ylim=ylim, highlight=["average"]),
                      f"{r}_per_style", f"{r} per style")
        ranked = sorted(records, key=lambda rec: -rec["scores"][r])
        report.heading(f"{r}: best images", level=3)
        report.gallery([_tile(rec, r) for rec in ranked[:examples]])
        report.heading(f"{r}: worst images", level=3)
        report.gallery([_tile(rec, r) for rec in ranked[::-1][:examples]])
    report.write(os.path.join(out, "report.html"), os.path.join(out, "report.md"))


def run_benchmark(out: str, prompts: Mapping[str, Sequence[str]], rewards: Mapping[str, object], *, pipe=None,
                  images_dir: str | None = None, seed: int = 0, batch_size: int = 8, sampling: Mapping | None = None,
                  info: Mapping | None = None) -> dict:
    """Generate (with ``pipe``) or take ``images_dir``, score, write ``results.jsonl``, ``summary.json``
    and the reports; return the summary."""
    t0 = time.time()
    os.makedirs(out, exist_ok=True)
    info = dict(info or {})
    if images_dir is None:
        if pipe is None:
            raise ValueError("give either images_dir or pipe")
        images_dir = os.path.join(out, "images")
        generate_images(pipe, prompts, images_dir, seed=seed, batch_size=batch_size, **dict(sampling or {}))
        info["generation"] = {"seed": seed, **dict(sampling or {})}
    scores, records = score_folder(images_dir, prompts, rewards)
    with open(os.path.join(out, "results.jsonl"), "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    summary = {"benchmark": "hpsv2", **info, "images_dir": os.path.abspath(images_dir), "scores": summarize(scores),
               "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    write_report(out, summary, records)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", help="diffusers pipeline folder, hub id, or shapes-sd / shapes-sd3")
    p.add_argument("--lora", help="LoRA folder or .safetensors file")
    p.add_argument("--revision", help="hub revision of --pipeline (branch, tag or commit), as from_pretrained(revision=...)")
    p.add_argument("--images", help="score a folder <style>/<index:05d>.jpg made elsewhere instead of generating")
    p.add_argument("--prompts", required=True, help="folder with anime.json, concept-art.json, paintings.json, photo.json")
    p.add_argument("--out", required=True)
    p.add_argument("--reward", nargs="+", default=["hpsv2", "hpsv2.1"],
                   help="rewards to report, NAME or NAME:key=value,... (default: hpsv2 hpsv2.1)")
    p.add_argument("--hps-path", help="folder with HPS_v2_compressed.pt / HPS_v2.1_compressed.pt (passed as path=)")
    p.add_argument("--styles", nargs="+", default=list(STYLES))
    p.add_argument("--limit", type=int, help="first N prompts per style (quick runs)")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device")
    p.add_argument("--dtype", type=dtype_argument, help="pipeline dtype: fp16/float16, bf16/bfloat16, fp32/float32 (default: as saved)")


def run(args: argparse.Namespace) -> int:
    import torch

    from diffalign.eval.checks import check_lora, check_output_folder, load_rewards_first

    prompts = {s: texts[: args.limit] for s, texts in read_style_prompts(args.prompts, args.styles).items()}
    images_dir, info = args.images, {}
    if not images_dir and not args.pipeline:
        raise SystemExit("give --pipeline (to generate) or --images DIR")
    check_output_folder(args.out)
    check_lora(args.lora)
    # the reward models load (on the CPU) before any image is generated: missing weights stop the job
    # at once; they move to the device once the pipeline is freed
    hps_defaults = {"path": args.hps_path} if args.hps_path else {}
    rewards = load_rewards_first(args.reward, defaults=lambda name: hps_defaults if name in ("hpsv2", "hpsv2.1") else {})
    if not images_dir:
        from diffalign.pipelines.generation import PipelineSpec, load_pipeline_spec, sampling_settings

        spec = PipelineSpec(args.pipeline, args.lora, args.revision)
        sampling = sampling_settings(spec.pipeline, None, num_inference_steps=args.steps, guidance_scale=args.guidance,
                                     height=args.height, width=args.width)
        pipe = load_pipeline_spec(spec, device=args.device, dtype=args.dtype)
        images_dir = os.path.join(args.out, "images")
        generate_images(pipe, prompts, images_dir, seed=args.seed, batch_size=args.batch_size, **sampling)
        del pipe  # free the accelerator for the reward models
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        info = {"pipeline": spec.label, "generation": {"seed": args.seed, **sampling}}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rewards = {name: r.to(device) for name, r in rewards.items()}
    summary = run_benchmark(args.out, prompts, rewards, images_dir=images_dir, info=info)
    for name, s in summary["scores"].items():
        parts = ", ".join(f"{st} {v['score']:.2f}" for st, v in s["styles"].items())
        print(f"{name}: {parts}; average {s['average']:.2f}")
    print(f"wrote {args.out}/results.jsonl, summary.json, report.html, report.md")
    return 0
