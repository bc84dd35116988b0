"""bench/video_gt_pairs.py: ground-truth-vs-sample video pairs (docs/video.md, "Why no video gain yet")."""
from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import video_gt_pairs  # noqa: E402

sys.path.pop(0)


@pytest.mark.slow  # builds a tiny CogVideoX pipeline and samples with it
def test_pairs_put_the_rendered_clip_first_and_load_as_video_pairs(tmp_path, capsys):
    from diffalign.data.config import DataConfig, build_dataset
    from diffalign.shapes import judge_video
    from diffalign.shapes.pretrain import build_pipeline
    from diffalign.shapes.pretraining.loop import save_fp16
    from diffalign.shapes.video import VIDEO_CATEGORIES
    from diffalign.utils.video import read_video

    settings = {"num_inference_steps": 2, "guidance_scale": 5.0, "height": 32, "width": 32, "num_frames": 9}
    pipe = save_fp16(build_pipeline("cogvideox", seed=0, tiny=True), str(tmp_path / "tiny"),
                     extra_json={"diffalign_sampling.json": settings})
    out = tmp_path / "gt"
    video_gt_pairs.main(["--out", str(out), "--pipeline", pipe, "--per-category", "1", "--batch-size", "4"])
    assert "5 pairs" in capsys.readouterr().out
    records = [json.loads(line) for line in open(out / "pairs.jsonl")]
    assert sorted(r["metadata"]["tag"] for r in records) == sorted(VIDEO_CATEGORIES)
    for r in records:
        assert r["label_0"] == 1.0 and r["caption"] == r["metadata"]["prompt"]
        truth, sample = (read_video(out / r[k]) for k in ("video_0", "video_1"))
        assert truth.shape == sample.shape == (9, 32, 32, 3)
        assert judge_video(truth, r["metadata"])["correct"]  # the winner is the exact rendering (after mp4)
        assert not judge_video(sample, r["metadata"])["correct"]  # a random-init pipeline draws nothing right

    # the file is what the shapes_video_dpo recipe reads
    data = DataConfig(path=str(out / "pairs.jsonl"), kind="pairs", media="video", resolution=32, num_frames=9,
                      columns={"image_0": "video_0", "image_1": "video_1", "label_0": "label_0"})
    dataset = build_dataset(data)
    assert len(dataset) == 5
    example = dataset[0]
    assert example.caption == records[0]["caption"] and example.soft_label == 1.0 and not example.is_tie
    truth = read_video(out / records[0]["video_0"])  # the winner is the ground-truth clip, in [0, 1]
    winner = example.winner.permute(0, 2, 3, 1).numpy()  # [T, 3, H, W] -> [T, H, W, 3]
    assert abs(winner * 255.0 - truth).max() <= 1.0
