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

``--swap-seeds N`` adds a same-noise test of the text conditioning: for noise seeds 0..N-1 and four
(colour, motion) pairs, the clip of ``"a video of a {colour} {shape} {motion}"`` for each of the four shapes
from the same noise, and for each of four colours (``square``, moving left). ``swap`` reports the mean absolute
pixel difference (in [0, 1]) between clips whose prompts differ only in the shape word, the same for the colour
word, and the class of the best detection of every frame per asked shape.
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


SWAP_SHAPES = ("circle", "square", "triangle", "diamond")
SWAP_COLOURS = ("red", "blue", "green", "yellow")
SWAP_PAIRS = (("red", "moving left"), ("blue", "moving down"), ("green", "moving right"), ("yellow", "moving up"))


def mean_pairwise_difference(clips) -> float:
    """Mean absolute difference over every pair of same-shaped float arrays."""
    import itertools

    import numpy as np

    pairs = list(itertools.combinations(range(len(clips)), 2))
    if not pairs:
        raise ValueError("need at least two clips to compare")
    return float(np.mean([np.abs(np.asarray(clips[a], np.float64) - np.asarray(clips[b], np.float64)).mean()
                          for a, b in pairs]))


def swap_test(sample, detect, seeds: int, encode=None) -> dict:
    """The same-noise word-swap test. ``sample(prompts, seed) -> float clips [N, T, H, W, 3]`` in [0, 1], every
    clip from the same noise; ``detect(uint8 frame) -> detections``, best first. With ``encode(prompts) -> float
    array [N, ...]`` (the pipeline's prompt embeddings) also the mean L2 distance between the embeddings of
    prompts that differ only in the shape word, and only in the colour word (pair and colours as the clips)."""
    import numpy as np

    shape_diffs, colour_diffs = [], []
    seen = {s: Counter() for s in SWAP_SHAPES}
    for seed in range(seeds):
        for colour, motion in SWAP_PAIRS:
            clips = sample([f"a video of a {colour} {s} {motion}" for s in SWAP_SHAPES], seed)
            shape_diffs.append(mean_pairwise_difference(clips))
            for shape, clip in zip(SWAP_SHAPES, clips):
                for frame in clip:
                    found = detect((np.asarray(frame) * 255).round().astype(np.uint8))
                    seen[shape][found[0].label if found else "none"] += 1
        colour_diffs.append(mean_pairwise_difference(
            sample([f"a video of a {c} square moving left" for c in SWAP_COLOURS], seed)))
    out = {"shape_word_difference": round(float(np.mean(shape_diffs)), 4),
           "colour_word_difference": round(float(np.mean(colour_diffs)), 4),
           "detected_per_asked_shape": {s: dict(c.most_common()) for s, c in seen.items()}}
    if encode is not None:
        import itertools

        def spread(prompts):
            e = np.asarray(encode(prompts), np.float64).reshape(len(prompts), -1)
            return float(np.mean([np.linalg.norm(e[a] - e[b]) for a, b in itertools.combinations(range(len(e)), 2)]))

        colour, motion = SWAP_PAIRS[0]
        out["shape_word_embedding_distance"] = round(spread([f"a video of a {colour} {s} {motion}" for s in SWAP_SHAPES]), 3)
        out["colour_word_embedding_distance"] = round(spread([f"a video of a {c} square moving left" for c in SWAP_COLOURS]), 3)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", default="shapes-cogvideox")
    p.add_argument("--per-category", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's recorded one)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--swap-seeds", type=int, default=0, help="noise seeds of the same-noise word-swap test (0: skip)")
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
    def detect(frame):
        return [d for d in detect_shapes(frame) if d.score >= THRESHOLD]

    out = {"pipeline": args.pipeline, "clips": len(rows), "seed": args.seed, "guidance": settings["guidance_scale"],
           **tally([(c[0], r) for c, r in zip(clips, rows)], detect)}
    if args.swap_seeds:
        call = {k: v for k, v in settings.items()}

        def sample(prompts, seed):
            generators = [torch.Generator().manual_seed(seed) for _ in prompts]
            with torch.no_grad():
                return pipe(prompts, generator=generators, output_type="np", **call).frames

        def encode(prompts):
            with torch.no_grad():
                embeds, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device="cpu",
                                               **({"max_sequence_length": call["max_sequence_length"]}
                                                  if "max_sequence_length" in call else {}))
            return embeds.float().numpy()

        out["swap"] = swap_test(sample, detect, args.swap_seeds, encode)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
