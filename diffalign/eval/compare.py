"""``diffalign eval compare``: win-rate of pipeline A over pipeline B per reward.

    diffalign eval compare --a PIPE[+LORA] --b PIPE[+LORA] --prompts FILE --reward NAME [NAME ...] --out DIR

Both pipelines get the same prompts and the same seeds (image ``k`` of every prompt starts from
``seed + k``), so each (prompt, k) is a pair. Per reward, a pair is a win for A when A's score is
better by more than ``--tie-tolerance`` (in the reward's direction), a loss when B's is, else a tie;
``win_rate = (wins + ties/2) / pairs`` with Wilson's 95% score interval (see
:mod:`diffalign.eval.winrate`). ``--prompts`` is a ``.txt`` / ``.json`` / ``.jsonl`` prompt file
(GenEval metadata works: rewards that need metadata, such as ``geneval``, get each row).
Writes ``DIR/images/{a,b}/``, ``results.jsonl`` (scores per pair), ``summary.json``, ``report.html``
and ``report.md``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

from diffalign.utils.dtypes import dtype_argument

EXAMPLES = 6


def _image_file(root: str, side: str, i: int, k: int) -> str:
    return os.path.join(root, "images", side, f"{i:05d}_{k:02d}.png")


def generate_side(pipe, records: Sequence[Mapping], out: str, side: str, *, images_per_prompt: int, seed: int,
                  batch_size: int, **sampling: Any) -> None:
    """Generate ``side``'s images (``a`` or ``b``) into ``out/images/<side>/<prompt>_<k>.png``."""
    from diffalign.pipelines.generation import generate

    os.makedirs(os.path.join(out, "images", side), exist_ok=True)

    def save(done):
        for i, k, image in done:
            image.save(_image_file(out, side, i, k))

    generate(pipe, [r["prompt"] for r in records], images_per_prompt=images_per_prompt, seed=seed,
             batch_size=batch_size, on_batch=save, **sampling)


def score_pairs(out: str, records: Sequence[Mapping], rewards: Mapping[str, Any], images_per_prompt: int) -> list[dict]:
    """One result per (prompt, k): the files and ``scores[reward] = [score_a, score_b]``."""
    from PIL import Image

    from diffalign.eval.scoring import score_images

    keys = [(i, k) for i in range(len(records)) for k in range(images_per_prompt)]
    prompts = [records[i]["prompt"] for i, _ in keys]
    metadata = [records[i] for i, _ in keys]
    side_scores = {}
    for side in ("a", "b"):
        images = []
        for i, k in keys:
            with Image.open(_image_file(out, side, i, k)) as im:
                images.append(im.convert("RGB"))
        side_scores[side] = {name: score_images(r, images, prompts, metadata) for name, r in rewards.items()}
    return [{"prompt_index": i, "image_index": k, "prompt": prompts[j],
             "file_a": _image_file(out, "a", i, k), "file_b": _image_file(out, "b", i, k),
             "scores": {name: [side_scores["a"][name][j], side_scores["b"][name][j]] for name in rewards}}
            for j, (i, k) in enumerate(keys)]


def summarize(results: Sequence[Mapping], rewards: Mapping[str, Any], *, tie_tolerance: float = 0.0,
              confidence: float = 0.95) -> dict:
    """Per reward: :class:`~diffalign.eval.winrate.WinRate` fields plus ``higher_is_better``."""
    from diffalign.eval.winrate import win_rate

    out = {}
    for name, reward in rewards.items():
        higher = bool(getattr(reward, "higher_is_better", True))
        wr = win_rate([r["scores"][name][0] for r in results], [r["scores"][name][1] for r in results],
                      higher_is_better=higher, tie_tolerance=tie_tolerance, confidence=confidence)
        out[name] = {**wr.as_dict(), "higher_is_better": higher}
    return out


def write_report(out: str, summary: Mapping, results: Sequence[Mapping], examples: int = EXAMPLES) -> None:
    from diffalign.eval.report import GalleryItem, Report, bar_chart

    conf = int(round(100 * summary["confidence"]))
    report = Report(f"A vs B: {summary['a']} vs {summary['b']}", f"{summary['pairs']} pairs (same prompts and seeds)")
    report.heading("Win-rate of A over B")
    rows = []
    for name, s in summary["rewards"].items():
        rows.append([name, s["wins"], s["ties"], s["losses"], f"{s['win_rate']:.3f}", f"[{s['low']:.3f}, {s['high']:.3f}]",
                     f"{s['mean_a']:.4g}", f"{s['mean_b']:.4g}", "higher" if s["higher_is_better"] else "lower"])
    headers = ["reward", "A wins", "ties", "B wins", "win-rate", f"{conf}% Wilson interval", "mean A", "mean B", "better"]
    report.table(headers, rows)
    report.paragraph(f"win-rate = (A wins + ties / 2) / pairs; ties are pairs whose scores differ by at most "
                     f"{summary['tie_tolerance']}. Interval: Wilson score interval at {conf}% with n = pairs.")
    rates = {n: s["win_rate"] for n, s in summary["rewards"].items()}
    errors = {n: (s["low"], s["high"]) for n, s in summary["rewards"].items()}
    report.figure(bar_chart(rates, title="win-rate of A over B", ylabel="win-rate", ylim=(0, 1.05), errors=errors, reference=0.5),
                  "win_rates", f"win-rate per reward with {conf}% Wilson intervals; dashed line: no difference")
    for name, s in summary["rewards"].items():
        sign = 1.0 if s["higher_is_better"] else -1.0
        ranked = sorted(results, key=lambda r: -sign * (r["scores"][name][0] - r["scores"][name][1]))
        for title, picks in (("largest wins of A", ranked[:examples]), ("largest wins of B", ranked[::-1][:examples])):
            report.heading(f"{name}: {title}", level=3)
            items = []
            for r in picks:
                a, b = r["scores"][name]
                a_better = sign * (a - b) > summary["tie_tolerance"]
                b_better = sign * (b - a) > summary["tie_tolerance"]
                tie = not (a_better or b_better)
                items.append(GalleryItem(r["file_a"], f"A: {r['prompt']}", None if tie else a_better, f"{a:.4g}"))
                items.append(GalleryItem(r["file_b"], f"B: {r['prompt']}", None if tie else b_better, f"{b:.4g}"))
            report.gallery(items)
    report.write(os.path.join(out, "report.html"), os.path.join(out, "report.md"))


def run_compare(out: str, records: Sequence[Mapping], pipes: Mapping[str, Callable[[], Any]],
                rewards: Mapping[str, Callable[[], Any]], *, labels: Mapping[str, str] | None = None,
                images_per_prompt: int = 1, seed: int = 0, batch_size: int = 8, sampling: Mapping | None = None,
                tie_tolerance: float = 0.0, confidence: float = 0.95) -> dict:
    """Generate with ``pipes["a"]()`` then ``pipes["b"]()`` (loaders, so that one pipeline is in memory
    at a time), then score with ``rewards`` (name -> loader of a reward), write the outputs and
    return the summary."""
    import torch

    t0 = time.time()
    os.makedirs(out, exist_ok=True)
    sampling = dict(sampling or {})
    for side in ("a", "b"):
        pipe = pipes[side]()
        generate_side(pipe, records, out, side, images_per_prompt=images_per_prompt, seed=seed, batch_size=batch_size, **sampling)
        del pipe
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    rewards = {name: load() for name, load in rewards.items()}
    results = score_pairs(out, records, rewards, images_per_prompt)
    with open(os.path.join(out, "results.jsonl"), "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    labels = dict(labels or {"a": "A", "b": "B"})
    summary = {"benchmark": "compare", "a": labels["a"], "b": labels["b"], "pairs": len(results), "prompts": len(records),
               "images_per_prompt": images_per_prompt, "seed": seed, "sampling": sampling, "tie_tolerance": tie_tolerance,
               "confidence": confidence, "interval": "Wilson score interval, n = pairs, ties count as half a win",
               "rewards": summarize(results, rewards, tie_tolerance=tie_tolerance, confidence=confidence),
               "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    write_report(out, summary, results)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, help="pipeline A: PIPE or PIPE+LORA; PIPE@REVISION pins a hub id's revision")
    p.add_argument("--b", required=True, help="pipeline B: PIPE or PIPE+LORA; PIPE@REVISION pins a hub id's revision")
    p.add_argument("--prompts", required=True, help=".txt / .json / .jsonl prompt file (GenEval metadata works)")
    p.add_argument("--reward", nargs="+", required=True, help="rewards: NAME or NAME:key=value,... (e.g. hpsv2.1:path=DIR)")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, help="first N prompts")
    p.add_argument("--images-per-prompt", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tie-tolerance", type=float, default=0.0, help="score differences up to this are ties")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--device")
    p.add_argument("--dtype", type=dtype_argument, help="pipeline dtype: fp16/float16, bf16/bfloat16, fp32/float32 (default: as saved)")


def run(args: argparse.Namespace) -> int:
    import torch

    from diffalign.eval.checks import check_lora, check_output_folder, load_rewards_first
    from diffalign.eval.prompts import read_prompt_file
    from diffalign.pipelines.generation import PipelineSpec, load_pipeline_spec, sampling_settings

    records = read_prompt_file(args.prompts)[: args.limit]
    specs = {"a": PipelineSpec.parse(args.a), "b": PipelineSpec.parse(args.b)}
    check_output_folder(args.out)
    for side, spec in specs.items():
        check_lora(spec.lora, f"--{side}")
    # the rewards load on the CPU before any image is generated (missing weights stop the job at once)
    # and move to the device once the pipelines are freed
    loaded = load_rewards_first(args.reward)
    sampling = sampling_settings(specs["a"].pipeline, None, num_inference_steps=args.steps, guidance_scale=args.guidance,
                                 height=args.height, width=args.width)

    pipes = {side: (lambda s=spec: load_pipeline_spec(s, device=args.device, dtype=args.dtype)) for side, spec in specs.items()}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rewards = {name: (lambda r=r: r.to(device)) for name, r in loaded.items()}
    summary = run_compare(args.out, records, pipes, rewards, labels={k: v.label for k, v in specs.items()},
                          images_per_prompt=args.images_per_prompt, seed=args.seed, batch_size=args.batch_size,
                          sampling=sampling, tie_tolerance=args.tie_tolerance, confidence=args.confidence)
    for name, s in summary["rewards"].items():
        print(f"{name}: A wins {s['wins']}, ties {s['ties']}, B wins {s['losses']}; win-rate {s['win_rate']:.3f} "
              f"[{s['low']:.3f}, {s['high']:.3f}]")
    print(f"wrote {args.out}/results.jsonl, summary.json, report.html, report.md")
    return 0
