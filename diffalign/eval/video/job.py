"""The video eval job: generate clips for moving-shapes rows, judge them with the temporal judge,
write ``videos/<prompt:05d>_<k:02d>.mp4``, ``results.jsonl``, ``summary.json`` and the reports."""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

from diffalign.pipelines.generation import generate
from diffalign.shapes.video import judge_video, summarize_video
from diffalign.utils.video import DEFAULT_FPS, write_video

VIDEO_SAMPLING = {"num_frames": 9}
"""Default sampling settings of the job (the moving-shapes world's clip length)."""


def run(out: str, rows: Sequence[Mapping], pipe, *, videos_per_prompt: int = 1, seed: int = 42, batch_size: int = 4,
        sampling: Mapping | None = None, fps: int = DEFAULT_FPS, num_segments: int = 3, info: Mapping | None = None) -> dict:
    """Generate, judge and report (see the module docstring); returns the summary."""
    from diffalign.eval.video.report import write_report

    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    prompts = [r["prompt"] for r in rows]
    results: list[dict] = []

    def judge(done):
        for i, k, clip in done:
            path = write_video(os.path.join(out, "videos", f"{i:05d}_{k:02d}.mp4"), clip, fps=fps)
            verdict = judge_video(clip, rows[i], num_segments=num_segments)
            results.append({"filename": os.path.relpath(path, out), "prompt_index": i, "video_index": k, "seed": seed + k,
                            "tag": rows[i].get("tag", "?"), "prompt": prompts[i], "metadata": json.dumps(rows[i]),
                            **verdict})

    generate(pipe, prompts, images_per_prompt=videos_per_prompt, seed=seed, batch_size=batch_size, on_batch=judge,
             video=True, **dict(sampling or {}))
    results.sort(key=lambda r: (r["prompt_index"], r["video_index"]))
    summary = {"label": "moving-shapes temporal judge", **summarize_video([json.loads(r["metadata"]) for r in results], results),
               "videos_per_prompt": videos_per_prompt, "prompts": len(rows), "fps": fps, "num_segments": num_segments,
               **dict(info or {})}
    with open(os.path.join(out, "results.jsonl"), "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    write_report(out, results, summary)
    return summary


def format_summary(summary: Mapping) -> str:
    lines = [summary["label"], f"videos {summary['n']}, prompts {summary['prompts']}"]
    for tag, c in summary["categories"].items():
        lines.append(f"{tag:<16} = {100 * c['accuracy']:.2f}% correct, score {c['score']:.3f} (n={c['n']})")
    lines += [f"{k:<22} = {v:.4f}" for k, v in summary["temporal"].items()]
    lines.append(f"Overall score (avg. over categories): {summary['overall']:.5f}")
    return "\n".join(lines)
