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
    # best against worst of four guided copies (copy 1 is the one that loses objects), at the pair's one eta
    fake4 = FakeVideoToVideo()
    four = make_dense_pairs(fake4, ROWS[:1], str(tmp_path / "four"), samples_per_prompt=4, num_inference_steps=10, seed=1)
    assert [c["n"] for c in fake4.calls] == [4] and four[0]["eta"] == records[0]["eta"]
    assert four[0]["scores"][1] == four[0]["score_1"] < four[0]["score_0"] == 1.0 and len(four[0]["scores"]) == 4
    assert four[0]["segment_labels"] == [0, 0, 1]
    drawn = np.random.default_rng([1, 0, 0])
    drawn.uniform(), drawn.integers(2**31)  # eta, source seed
    assert four[0]["noise_seeds"] == [int(s) for s in drawn.integers(2**31, size=4)[:2]]
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


class FakeTextToVideo:
    """Renders each prompt's ground-truth clip, then greys out the last ``LOST[j]`` frames of the j-th clip of every
    group of ``n`` (so within a group the judge's best and worst clips are known and not the first and last)."""

    LOST = [2, 0, 5, 1]

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, generator, num_frames=9, height=32, width=32, output_type="np", **kw):
        from diffalign.shapes.video import render_video

        self.calls.append(len(prompt))
        by_prompt = {r["prompt"]: r for r in ROWS}
        clips = np.stack([render_video(by_prompt[p], num_frames=num_frames, size=height, seed=0) for p in prompt])
        clips = clips.astype(np.float32) / 255.0
        for j in range(len(prompt)):
            lost = self.LOST[j % len(self.LOST)]
            if lost:
                clips[j, num_frames - lost:] = 128 / 255.0
        return types.SimpleNamespace(frames=clips)


@pytest.mark.slow
def test_sampled_pairs_best_against_worst_of_n(tmp_path):
    from diffalign.shapes.video.dense_pairs import make_sampled_pairs

    fake = FakeTextToVideo()
    records = make_sampled_pairs(fake, ROWS, str(tmp_path), samples_per_prompt=4, batch_size=8, seed=3)
    assert fake.calls == [8]  # two prompts of four clips in one batch
    assert len(records) == 2
    for r in records:
        assert len(r["scores"]) == 4 and r["label_0"] == 1.0
        # the best (nothing lost) against the worst (five frames lost), whatever their place in the group
        assert r["score_0"] == max(r["scores"]) == r["scores"][1] == 1.0
        assert r["score_1"] == min(r["scores"]) == r["scores"][2] < r["scores"][0]
        seeds = np.random.default_rng([3, ROWS.index(next(x for x in ROWS if x["prompt"] == r["caption"])), 0]).integers(2**31, size=4)
        assert r["noise_seeds"] == [int(seeds[1]), int(seeds[2])]
    ds = build_dataset(DataConfig(path=str(tmp_path / "pairs.jsonl"), kind="pairs", media="video", resolution=32,
                                  columns={"image_0": "video_0", "image_1": "video_1", "label_0": "label_0"}))
    assert len(ds) == 2
    # two samples a prompt: the two clips are the pair, in the order drawn (clip 1 lost nothing, clip 0 two frames)
    plain = make_sampled_pairs(FakeTextToVideo(), ROWS[:1], str(tmp_path / "plain"), batch_size=8, seed=3)
    assert len(plain) == 1 and "scores" not in plain[0] and plain[0]["label_0"] == 0.0
    with pytest.raises(ValueError, match="samples_per_prompt must be at least 2"):
        make_sampled_pairs(fake, ROWS, str(tmp_path / "bad"), samples_per_prompt=1)
