"""Ground-truth video pairs: the control runs of docs/video.md ("Why no video gain yet").

    python bench/video_gt_pairs.py --out DIR [--pipeline shapes-cogvideox] [--per-category 204] [--seed 11]

For moving-shapes TRAIN rows (``sample_video_rows(N, seed, "train")``: N per category) it writes a
pair per row whose winner is the row's rendered ground-truth clip (``render_video``, judged 1.0) and
whose loser is a clip the pipeline samples at its recorded settings (noise seed ``1000 + row``), as
``DIR/videos/*.mp4`` and ``DIR/pairs.jsonl`` in the format of ``make_sampled_pairs`` (``caption``,
``video_0`` = ground truth, ``video_1`` = sample, ``label_0`` = 1, the row as ``metadata``). Train on it
with the ``shapes_video_dpo`` recipe (``data.path=DIR/pairs.jsonl``; ``method=sft`` fits the ground-truth
clips alone). The labels are as clean as labels can be, so these runs separate "the labels are noisy"
from "the pipeline cannot be moved by a LoRA on these data". Prints the mean judge score of the ground
truth, of its mp4 round trip and of the samples.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--pipeline", default="shapes-cogvideox")
    p.add_argument("--per-category", type=int, default=204, help="TRAIN rows per category")
    p.add_argument("--seed", type=int, default=11, help="row sampling seed")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    import diffalign  # noqa: F401  (before torchvision-using imports)
    from diffalign.pipelines import load_adapter
    from diffalign.pipelines.generation import resolve_pipeline_path, sampling_settings
    from diffalign.shapes import judge_video, render_video
    from diffalign.shapes.video import sample_video_rows
    from diffalign.utils.video import read_video, write_video

    torch.set_num_threads(args.threads)
    adapter = load_adapter(resolve_pipeline_path(args.pipeline))
    pipe, settings = adapter.pipe, sampling_settings(args.pipeline, {"num_inference_steps": 20, "guidance_scale": 8.0})
    size = int(settings.get("height") or 32)
    frames = int(settings.get("num_frames") or 9)
    rows = sample_video_rows(args.per_category, seed=args.seed, split="train")
    os.makedirs(os.path.join(args.out, "videos"), exist_ok=True)
    records, scores = [], []
    for start in range(0, len(rows), args.batch_size):
        chunk = rows[start : start + args.batch_size]
        result = pipe([r["prompt"] for r in chunk], num_frames=frames, height=size, width=size,
                      num_inference_steps=settings["num_inference_steps"], guidance_scale=settings["guidance_scale"],
                      max_sequence_length=adapter.max_sequence_length, output_type="np",
                      generator=[torch.Generator().manual_seed(1000 + start + j) for j in range(len(chunk))])
        for j, (row, clip) in enumerate(zip(chunk, result.frames)):
            i = start + j
            sample = np.clip(np.round(np.asarray(clip) * 255.0), 0, 255).astype(np.uint8)
            truth = render_video(row, num_frames=frames, size=size, seed=i)
            names = [write_video(os.path.join(args.out, "videos", f"{i:05d}_{k}.mp4"), c) for k, c in enumerate((truth, sample))]
            scores.append((judge_video(truth, row)["score"], judge_video(read_video(names[0]), row)["score"],
                           judge_video(sample, row)["score"]))
            records.append({"caption": row["prompt"], "video_0": os.path.relpath(names[0], args.out),
                            "video_1": os.path.relpath(names[1], args.out), "label_0": 1.0, "metadata": dict(row)})
    with open(os.path.join(args.out, "pairs.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    truth, truth_mp4, sample = np.mean(scores, axis=0)
    print(f"{len(records)} pairs in {args.out}/pairs.jsonl; judge score: ground truth {truth:.3f}, "
          f"its mp4 {truth_mp4:.3f}, samples {sample:.3f}")


if __name__ == "__main__":
    main()
