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

Video pipelines (CogVideoX, Wan, ...: their ``__call__`` takes ``num_frames``; ``--num-frames`` sets it)
are compared the same way with video rewards (``modality == "video"``: ``shapes_video``, the temporal
judge; ``temporal_consistency``; any image reward over frames as ``video:reward=NAME,frames=...``):
each clip is written as ``DIR/videos/{a,b}/<prompt>_<k>.mp4`` (GIF without ffmpeg) for viewing and as
``DIR/frames/{a,b}/<prompt>_<k>.npy`` (the pipeline's uint8 frames [T, H, W, 3], lossless) for scoring,
so the scores do not depend on the video codec; the report shows the pairs as looping ``<video>``
elements. An image reward on videos (or a video reward on images) is refused before anything is
generated. A reward named twice with different options (``video:reward=a video:reward=b``) is keyed
by its whole spec. Launched as several processes (``torchrun --nproc_per_node N -m diffalign eval
compare ...``), the prompts are split over them (accelerate's ``split_between_processes``), the
scored pairs gathered in prompt order, and the main process writes what one process writes.
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


def _frames_file(root: str, side: str, i: int, k: int) -> str:
    return os.path.join(root, "frames", side, f"{i:05d}_{k:02d}.npy")


def _video_file(root: str, side: str, i: int, k: int) -> str:
    """The clip's viewing file: the ``.mp4`` written, or the ``.gif`` written instead without ffmpeg."""
    mp4 = os.path.join(root, "videos", side, f"{i:05d}_{k:02d}.mp4")
    gif = os.path.splitext(mp4)[0] + ".gif"
    return gif if not os.path.exists(mp4) and os.path.exists(gif) else mp4


def generate_side(pipe, records: Sequence[Mapping], out: str, side: str, *, images_per_prompt: int, seed: int,
                  batch_size: int, indices: Sequence[int] | None = None, video: bool = False, fps: int | None = None,
                  **sampling: Any) -> None:
    """Generate ``side``'s images (``a`` or ``b``) into ``out/images/<side>/<prompt>_<k>.png`` for the
    prompts ``indices`` (default: all); ``video=True``: clips into ``out/videos/<side>/<prompt>_<k>.mp4``
    and their frames into ``out/frames/<side>/<prompt>_<k>.npy``."""
    import numpy as np

    from diffalign.pipelines.generation import generate
    from diffalign.utils.video import DEFAULT_FPS, write_video

    folders = ("videos", "frames") if video else ("images",)
    for folder in folders:
        os.makedirs(os.path.join(out, folder, side), exist_ok=True)
    indices = list(range(len(records))) if indices is None else list(indices)

    def save(done):
        for i, k, item in done:
            if video:
                np.save(_frames_file(out, side, indices[i], k), np.asarray(item, dtype=np.uint8))
                write_video(os.path.join(out, "videos", side, f"{indices[i]:05d}_{k:02d}.mp4"), item, fps=fps or DEFAULT_FPS)
            else:
                item.save(_image_file(out, side, indices[i], k))

    generate(pipe, [records[i]["prompt"] for i in indices], images_per_prompt=images_per_prompt, seed=seed,
             batch_size=batch_size, on_batch=save, video=video, **sampling)


def check_modalities(rewards: Mapping[str, Any], video: bool) -> None:
    """Refuse a reward whose modality does not match the pipelines' output (one line naming it)."""
    want = "video" if video else "image"
    for name, reward in rewards.items():
        modality = getattr(reward, "modality", "image")
        if modality == want:
            continue
        if video and modality == "image":
            raise ValueError(f"--reward {name} scores images, but the pipelines make videos: score frames with "
                             f"video:reward={name.split(':')[0]},frames=uniform (see diffalign.rewards.video)")
        raise ValueError(f"--reward {name} scores {modality}s, but the pipelines make {'videos' if video else 'images'}")


def score_pairs(out: str, records: Sequence[Mapping], rewards: Mapping[str, Any], images_per_prompt: int,
                indices: Sequence[int] | None = None, video: bool = False, batch_size: int = 16) -> list[dict]:
    """One result per (prompt, k) of the prompts ``indices`` (default: all): the files and
    ``scores[reward] = [score_a, score_b]``. ``video=True``: the saved frames are scored and
    ``file_a`` / ``file_b`` are the mp4s."""
    import numpy as np
    from PIL import Image

    from diffalign.eval.scoring import score_images

    indices = range(len(records)) if indices is None else indices
    keys = [(i, k) for i in indices for k in range(images_per_prompt)]
    prompts = [records[i]["prompt"] for i, _ in keys]
    metadata = [records[i] for i, _ in keys]
    side_scores = {}
    for side in ("a", "b"):
        items = []
        for i, k in keys:
            if video:
                items.append(np.load(_frames_file(out, side, i, k)))
            else:
                with Image.open(_image_file(out, side, i, k)) as im:
                    items.append(im.convert("RGB"))
        side_scores[side] = {name: score_images(r, items, prompts, metadata, batch_size=batch_size)
                             for name, r in rewards.items()}
    media = _video_file if video else _image_file
    return [{"prompt_index": i, "image_index": k, "prompt": prompts[j],
             "file_a": media(out, "a", i, k), "file_b": media(out, "b", i, k),
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
    from diffalign.eval.report import GalleryItem, bar_chart
    from diffalign.eval.video.report import VideoReport

    conf = int(round(100 * summary["confidence"]))
    report = VideoReport(f"A vs B: {summary['a']} vs {summary['b']}", f"{summary['pairs']} pairs (same prompts and seeds)"
                         + (", videos" if summary.get("video") else ""))
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
            if summary.get("video"):
                report.video_gallery(out, items)
            else:
                report.gallery(items)
    report.write(os.path.join(out, "report.html"), os.path.join(out, "report.md"))


def run_compare(out: str, records: Sequence[Mapping], pipes: Mapping[str, Callable[[], Any]],
                rewards: Mapping[str, Callable[[], Any]], *, labels: Mapping[str, str] | None = None,
                images_per_prompt: int = 1, seed: int = 0, batch_size: int = 8, sampling: Mapping | None = None,
                tie_tolerance: float = 0.0, confidence: float = 0.95, state=None, fps: int | None = None,
                modalities: Mapping[str, Any] | None = None) -> dict | None:
    """Generate with ``pipes["a"]()`` then ``pipes["b"]()`` (loaders, so that one pipeline is in memory
    at a time), then score with ``rewards`` (name -> loader of a reward), write the outputs and
    return the summary (``modalities``: the rewards already built, name -> reward, checked against
    pipeline A's output before anything is generated). With ``state`` (accelerate's ``PartialState`` of several processes) each
    process does its share of the prompts; the main process writes and returns the summary, the
    others return None. Video pipelines (see :func:`diffalign.pipelines.generation.is_video_pipeline`)
    write and score clips; both pipelines must be of the same kind and every reward of theirs."""
    import contextlib

    import torch

    from diffalign.pipelines.generation import is_video_pipeline

    t0 = time.time()
    os.makedirs(out, exist_ok=True)
    sampling = dict(sampling or {})
    many = state is not None and state.num_processes > 1
    split = state.split_between_processes(list(range(len(records)))) if many else contextlib.nullcontext(None)
    with split as mine:
        kinds = {}
        for side in ("a", "b"):
            pipe = pipes[side]()
            kinds[side] = is_video_pipeline(pipe)
            if kinds[side] != kinds["a"]:
                raise ValueError(f"pipeline A makes {'videos' if kinds['a'] else 'images'} but pipeline B makes "
                                 f"{'videos' if kinds['b'] else 'images'}: compare needs two of the same kind")
            if side == "a" and modalities is not None:
                check_modalities(modalities, kinds["a"])
            if side == "a" and not kinds["a"] and "num_frames" in sampling:
                raise ValueError("--num-frames is for video pipelines; pipeline A makes images")
            generate_side(pipe, records, out, side, images_per_prompt=images_per_prompt, seed=seed, batch_size=batch_size,
                          indices=mine, video=kinds[side], fps=fps, **sampling)
            del pipe
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        video = kinds["a"]
        rewards = {name: load() for name, load in rewards.items()}
        check_modalities(rewards, video)
        results = score_pairs(out, records, rewards, images_per_prompt, indices=mine, video=video,
                              batch_size=batch_size)
    if many:
        from accelerate.utils import gather_object

        results = gather_object(results)
        if not state.is_main_process:
            return None
    with open(os.path.join(out, "results.jsonl"), "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    labels = dict(labels or {"a": "A", "b": "B"})
    summary = {"benchmark": "compare", "a": labels["a"], "b": labels["b"], "pairs": len(results), "prompts": len(records),
               "video": video, "images_per_prompt": images_per_prompt, "seed": seed, "sampling": sampling, "tie_tolerance": tie_tolerance,
               "processes": state.num_processes if many else 1,
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
    p.add_argument("--num-frames", type=int, help="frames per clip of video pipelines (default: the pipeline folder's "
                   "sampling file, else the pipeline's own default)")
    p.add_argument("--fps", type=int, help="frame rate of the mp4s written for video pipelines (default 8)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tie-tolerance", type=float, default=0.0, help="score differences up to this are ties")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--device")
    p.add_argument("--dtype", type=dtype_argument, help="pipeline dtype: fp16/float16, bf16/bfloat16, fp32/float32 (default: as saved)")


def run(args: argparse.Namespace) -> int:
    import torch

    from diffalign.eval.checks import check_lora, check_output_folder, load_rewards_first
    from diffalign.eval.processes import eval_state, process_device
    from diffalign.eval.prompts import read_prompt_file
    from diffalign.pipelines.generation import PipelineSpec, load_pipeline_spec, sampling_settings

    state = eval_state()  # several processes: the prompts are split over them
    args.device = process_device(state, args.device)
    records = read_prompt_file(args.prompts)[: args.limit]
    specs = {"a": PipelineSpec.parse(args.a), "b": PipelineSpec.parse(args.b)}
    check_output_folder(args.out)
    for side, spec in specs.items():
        check_lora(spec.lora, f"--{side}")
    # the rewards load on the CPU before any image is generated (missing weights stop the job at once)
    # and move to the device once the pipelines are freed
    loaded = load_rewards_first(args.reward)
    sampling = sampling_settings(specs["a"].pipeline, None, num_inference_steps=args.steps, guidance_scale=args.guidance,
                                 height=args.height, width=args.width, num_frames=args.num_frames)

    pipes = {side: (lambda s=spec: load_pipeline_spec(s, device=args.device, dtype=args.dtype)) for side, spec in specs.items()}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rewards = {name: (lambda r=r: r.to(device)) for name, r in loaded.items()}
    summary = run_compare(args.out, records, pipes, rewards, labels={k: v.label for k, v in specs.items()},
                          images_per_prompt=args.images_per_prompt, seed=args.seed, batch_size=args.batch_size,
                          sampling=sampling, tie_tolerance=args.tie_tolerance, confidence=args.confidence, state=state,
                          fps=args.fps, modalities=loaded)
    if summary is None:  # not the main process
        return 0
    for name, s in summary["rewards"].items():
        print(f"{name}: A wins {s['wins']}, ties {s['ties']}, B wins {s['losses']}; win-rate {s['win_rate']:.3f} "
              f"[{s['low']:.3f}, {s['high']:.3f}]")
    print(f"wrote {args.out}/results.jsonl, summary.json, report.html, report.md")
    return 0
