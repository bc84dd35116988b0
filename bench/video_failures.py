"""Why a shapes-video pipeline's clips fail the temporal judge, frame by frame (docs/video.md, "What the base
gets wrong").

    python bench/video_failures.py [--pipeline shapes-cogvideox] [--per-category 16] [--seed 0] [--guidance G]

Samples one clip per row of ``sample_video_rows(per_category, seed, "test")`` at the pipeline's recorded
settings (as ``diffalign eval video`` does; ``--guidance`` overrides the recorded scale), runs the judge's
per-frame detector (``detect_shapes``, detections below the judge's threshold dropped) on every frame and sorts
each (include clause, frame) into one outcome, checked in this order:

- ``ok``: exactly the clause's count of objects of its class (and colour, when it names one);
- ``too many`` / ``too few``: objects of the right class and colour, but not as many as asked;
- ``wrong colour``: objects of the right class, none in the asked colour;
- ``other class only``: detections, none of the asked class;
- ``nothing detected``: no detection in the frame.

Prints one JSON line: the share of each outcome over all clause-frames, the same per asked class, and, for
``other class only``, which classes were detected instead (counts).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from typing import Mapping, Sequence

OUTCOMES = ("ok", "too many", "too few", "wrong colour", "other class only", "nothing detected")


def frame_outcome(detections: Sequence, clause: Mapping) -> str:
    """One of :data:`OUTCOMES` for one include clause (``class``, optional ``color`` and ``count``) against one
    frame's detections (objects with ``label`` and ``color``)."""
    count = int(clause.get("count", 1))
    same_class = [d for d in detections if d.label == clause["class"]]
    matching = [d for d in same_class if clause.get("color") is None or d.color == clause["color"]]
    if len(matching) == count:
        return "ok"
    if matching:
        return "too many" if len(matching) > count else "too few"
    if same_class:
        return "wrong colour"
    return "other class only" if detections else "nothing detected"


def tally(clips_and_rows, detect) -> dict:
    """Outcome shares over every (clause, frame) of ``(frames, row)`` pairs, overall and per asked class, and the
    classes detected instead where only other classes were found. ``detect(frame) -> detections``."""
    overall, per_class, instead = Counter(), defaultdict(Counter), defaultdict(Counter)
    for frames, row in clips_and_rows:
        for frame in frames:
            detections = detect(frame)
            for clause in row["include"]:
                outcome = frame_outcome(detections, clause)
                overall[outcome] += 1
                per_class[clause["class"]][outcome] += 1
                if outcome == "other class only":
                    instead[clause["class"]].update(d.label for d in detections)

    def shares(counter: Counter) -> dict[str, float]:
        total = sum(counter.values())
        return {k: round(counter[k] / total, 3) for k in OUTCOMES if counter[k]}

    return {"clause_frames": sum(overall.values()), "outcomes": shares(overall),
            "per_class": {c: {"clause_frames": sum(n.values()), **shares(n)} for c, n in sorted(per_class.items())},
            "detected_instead": {c: dict(n.most_common()) for c, n in sorted(instead.items())}}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", default="shapes-cogvideox")
    p.add_argument("--per-category", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's recorded one)")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)

    import diffalign  # noqa: F401  (compat shim before torchvision)
    import torch
    from diffusers import DiffusionPipeline

    from diffalign.geneval.rules import THRESHOLD
    from diffalign.pipelines.generation import generate, resolve_pipeline_path
    from diffalign.shapes.detect import detect_shapes
    from diffalign.shapes.sampling import sampling_defaults
    from diffalign.shapes.video import sample_video_rows

    path = resolve_pipeline_path(args.pipeline)
    pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    settings = sampling_defaults(path)
    if args.guidance is not None:
        settings["guidance_scale"] = args.guidance
    rows = sample_video_rows(args.per_category, args.seed, "test")
    with torch.no_grad():
        clips = generate(pipe, [r["prompt"] for r in rows], seed=args.seed, batch_size=args.batch_size, video=True,
                         **settings)
    out = {"pipeline": args.pipeline, "clips": len(rows), "seed": args.seed, "guidance": settings["guidance_scale"],
           **tally([(c[0], r) for c, r in zip(clips, rows)],
                   lambda frame: [d for d in detect_shapes(frame) if d.score >= THRESHOLD])}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
