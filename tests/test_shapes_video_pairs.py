"""DenseDPO pair tool: two SDEdit copies of one rendered source clip, labelled per segment by the
temporal judge, written in the video_pairs format the data loader reads."""
import json
import types

import numpy as np
import pytest

import diffalign  # noqa: F401  (compat shim first)
from diffalign.data import DataConfig, build_dataset
from diffalign.shapes.video import all_video_rows
from diffalign.shapes.video.dense_pairs import make_dense_pairs

ROWS = [next(r for r in all_video_rows("motion") if r["prompt"] == "a video of a red circle moving left"),
        next(r for r in all_video_rows("two_motion") if r["prompt"] == "a video of a circle moving up and a square standing still")]


class FakeVideoToVideo:
    """Copy 0 comes back as the source; copy 1 loses its objects in the last three frames."""

    def __init__(self):
        self.calls = []

    def __call__(self, video, prompt, strength, generator, output_type="np", num_inference_steps=20, **kw):
        self.calls.append({"strength": strength, "n": len(video), "steps": num_inference_steps, "prompt": prompt})
        clips = np.stack([np.stack([np.asarray(f) for f in v]) for v in video]).astype(np.float32) / 255.0
        clips[1, 6:] = 128 / 255.0
        return types.SimpleNamespace(frames=clips)


@pytest.mark.slow
def test_pairs_share_eta_get_segment_labels_and_load_as_video_pairs(tmp_path):
    fake = FakeVideoToVideo()
    records = make_dense_pairs(fake, ROWS, str(tmp_path), pairs_per_prompt=2, num_inference_steps=10, seed=1)
    assert len(records) == 4 and len(fake.calls) == 4
    # both copies of a pair in one call, at one guidance level drawn from DenseDPO's U(0.65, 0.8)
    assert all(c["n"] == 2 and 0.65 <= c["strength"] <= 0.8 and c["steps"] == 10 for c in fake.calls)
    assert [r["eta"] for r in records] == [c["strength"] for c in fake.calls]
    assert len({r["eta"] for r in records}) == 4
    for r in records:
        assert r["segment_labels"] == [0, 0, 1] and r["score_0"] == 1.0 and r["score_1"] < 1.0
        assert r["segments_0"] == [1.0, 1.0, 1.0] and r["segments_1"][2] < 1.0
    assert records[0]["video_0"] == "videos/00000_00_0.mp4"
    again = make_dense_pairs(FakeVideoToVideo(), ROWS, str(tmp_path / "again"), pairs_per_prompt=2,
                             num_inference_steps=10, seed=1)
    assert [r["eta"] for r in again] == [r["eta"] for r in records]  # same seed, same pairs
    ds = build_dataset(DataConfig(path=str(tmp_path / "pairs.jsonl"), kind="video_pairs", resolution=32))
    assert len(ds) == 4 and ds.segment_labels(0) == [0, 0, 1]
    ex = ds[0]
    assert ex.caption == ROWS[0]["prompt"] and tuple(ex.video_0.shape) == (9, 3, 32, 32)
    assert float((ex.video_0 - ex.video_1)[6:].abs().mean()) > 0.01 > float((ex.video_0 - ex.video_1)[:6].abs().mean())
    with pytest.raises(ValueError, match="eta_range"):
        make_dense_pairs(fake, ROWS, str(tmp_path / "bad"), eta_range=(0.8, 0.6))


def test_unknown_pipelines_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no video-to-video pipeline known for function"):
        make_dense_pairs(lambda prompt, num_frames=9: None, ROWS, str(tmp_path))


@pytest.mark.slow
def test_pairs_from_the_tiny_cogvideox_pipeline(tmp_path):
    from diffalign.pipelines.tiny import build_tiny_pipeline

    records = make_dense_pairs(build_tiny_pipeline("cogvideox", seed=0), ROWS[:1], str(tmp_path), num_inference_steps=4)
    lines = [json.loads(line) for line in open(tmp_path / "pairs.jsonl")]
    assert lines == records and len(lines[0]["segment_labels"]) == 3
    ds = build_dataset(DataConfig(path=str(tmp_path / "pairs.jsonl"), kind="video_pairs", resolution=32))
    assert tuple(ds[0].video_1.shape) == (9, 3, 32, 32)
