"""``diffalign eval compare`` on video pipelines: clips written as mp4 (scored from their lossless
frames), video rewards (the temporal judge, temporal consistency, image rewards over frames), the
report's <video> elements and the win-rates; refusals of mismatched rewards and pipelines; the tiny
random CogVideoX end to end."""
import base64
import json
import os
import re
import types

import numpy as np
import pytest

from diffalign.cli import main
from diffalign.pipelines import generation
from diffalign.shapes import render_video
from diffalign.shapes.video import all_video_rows
from diffalign.utils.video import read_video

PROMPTS = ("a video of a red circle moving left", "a video of a blue square moving up")
ROWS = [r for r in all_video_rows("motion") if r["prompt"] in PROMPTS]


class RenderVideoPipeline:
    """Renders each prompt's ground-truth clip (played backwards when ``reverse``) at 32 px, 5 frames."""

    def __init__(self, reverse=False):
        self.rows = {r["prompt"]: r for r in ROWS}
        self.reverse = reverse
        self.calls = []

    def __call__(self, prompt, generator, output_type="np", num_frames=9, **sampling):
        self.calls.append((num_frames, sampling))
        clips = [render_video(self.rows[p], num_frames=num_frames, size=32, seed=g.initial_seed()) for p, g in zip(prompt, generator)]
        frames = np.stack([c[::-1] if self.reverse else c for c in clips]).astype(np.float32) / 255.0
        return types.SimpleNamespace(frames=frames)


class ImagePipeline:
    def __call__(self, prompt, generator, output_type="pil", **sampling):
        from PIL import Image

        return types.SimpleNamespace(images=[Image.new("RGB", (16, 16)) for _ in prompt])


def _setup(tmp_path, monkeypatch, pipes):
    loaded = []

    def fake_load(spec, device=None, dtype=None):
        loaded.append(spec.pipeline)
        return pipes[spec.pipeline]

    monkeypatch.setattr(generation, "load_pipeline_spec", fake_load)
    prompts = tmp_path / "rows.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return str(prompts), loaded


@pytest.mark.slow
def test_compare_videos_with_the_temporal_judge(tmp_path, monkeypatch, capsys):
    forward, backward = RenderVideoPipeline(), RenderVideoPipeline(reverse=True)
    prompts, loaded = _setup(tmp_path, monkeypatch, {"fwd": forward, "bwd": backward})
    out = tmp_path / "cmp"
    assert main(["eval", "compare", "--a", "fwd", "--b", "bwd", "--prompts", prompts, "--reward", "shapes_video",
                 "--num-frames", "5", "--steps", "3", "--out", str(out)]) == 0
    assert loaded == ["fwd", "bwd"]
    assert forward.calls == [(5, {"num_inference_steps": 3})]
    summary = json.load(open(out / "summary.json"))
    assert summary["video"] is True and summary["pairs"] == 2
    judge = summary["rewards"]["shapes_video"]
    # right way round: every rule holds (1.0); reversed: present and straight but the wrong way (2/3)
    assert (judge["wins"], judge["ties"], judge["losses"], judge["win_rate"]) == (2, 0, 0, 1.0)
    assert judge["mean_a"] == 1.0 and judge["mean_b"] == pytest.approx(2 / 3)
    results = [json.loads(line) for line in open(out / "results.jsonl")]
    assert [r["scores"]["shapes_video"] for r in results] == [[1.0, pytest.approx(2 / 3)]] * 2
    assert results[0]["file_a"] == str(out / "videos" / "a" / "00000_00.mp4")
    clip = read_video(results[0]["file_b"])
    assert clip.shape == (5, 32, 32, 3)
    frames = np.load(out / "frames" / "b" / "00000_00.npy")  # lossless: exactly the reversed render
    assert np.array_equal(frames, render_video(ROWS[0], num_frames=5, size=32, seed=0)[::-1])
    page = open(out / "report.html").read()
    videos = re.findall(r'<video src="data:video/mp4;base64,([^"]+)"', page)
    assert len(videos) == 8  # largest wins of A and of B: 2 pairs x 2 sides each
    assert base64.b64decode(videos[0]) == open(results[0]["file_a"], "rb").read()
    assert page.count("<img") == 1  # the win-rate chart; every clip is a <video>
    assert "| shapes_video | 2 | 0 | 0 | 1.000 |" in open(out / "report.md").read()
    assert "shapes_video: A wins 2, ties 0, B wins 0; win-rate 1.000" in capsys.readouterr().out


def test_compare_refuses_an_image_reward_on_videos_before_generating(tmp_path, monkeypatch):
    forward = RenderVideoPipeline()
    prompts, _ = _setup(tmp_path, monkeypatch, {"fwd": forward})
    with pytest.raises(ValueError, match=r"--reward shapes_color scores images, but the pipelines make videos: "
                                         r"score frames with video:reward=shapes_color"):
        main(["eval", "compare", "--a", "fwd", "--b", "fwd", "--prompts", prompts, "--reward", "shapes_color",
              "--out", str(tmp_path / "cmp")])
    assert forward.calls == []


@pytest.mark.slow
def test_compare_refuses_a_video_and_an_image_pipeline(tmp_path, monkeypatch):
    prompts, _ = _setup(tmp_path, monkeypatch, {"fwd": RenderVideoPipeline(), "img": ImagePipeline()})
    with pytest.raises(ValueError, match="pipeline A makes videos but pipeline B makes images"):
        main(["eval", "compare", "--a", "fwd", "--b", "img", "--prompts", prompts, "--reward", "temporal_consistency",
              "--num-frames", "3", "--out", str(tmp_path / "cmp")])


@pytest.mark.slow
def test_compare_tiny_cogvideox_with_frame_rewards(tmp_path, monkeypatch):
    """The tiny random CogVideoX against itself: same prompts and seeds give the same clips, so
    every pair ties under every reward (win-rate exactly 0.5); two ``video`` rewards with different
    options are kept apart by their specs; clips are mp4s of the requested frame count."""
    from diffalign.pipelines.tiny import build_tiny_pipeline

    prompts, _ = _setup(tmp_path, monkeypatch, {"tiny": build_tiny_pipeline("cogvideox", seed=0)})
    out = tmp_path / "cmp"
    # (the temporal judge is left to the test above: on a random model's noise it takes seconds a clip)
    specs = ["temporal_consistency", "video:reward=shapes_color,frames=all", "video:reward=shapes_color,frames=fml,weighting=attenuated",
             "shapes_video_motion"]
    assert main(["eval", "compare", "--a", "tiny", "--b", "tiny", "--prompts", prompts, "--reward", *specs,
                 "--num-frames", "5", "--height", "16", "--width", "16", "--steps", "2", "--out", str(out)]) == 0
    summary = json.load(open(out / "summary.json"))
    assert sorted(summary["rewards"]) == sorted(["temporal_consistency", specs[1], specs[2], "shapes_video_motion"])
    for name, s in summary["rewards"].items():
        assert (s["wins"], s["ties"], s["losses"], s["win_rate"]) == (0, 2, 0, 0.5), name
        assert s["mean_a"] == s["mean_b"]
    assert 0.0 < summary["rewards"]["temporal_consistency"]["mean_a"] < 1.0  # random weights: the clip changes
    frames = np.load(out / "frames" / "a" / "00001_00.npy")
    assert frames.shape[1:] == (16, 16, 3) and read_video(out / "videos" / "a" / "00001_00.mp4").shape == frames.shape
    assert np.array_equal(np.load(out / "frames" / "a" / "00001_00.npy"), np.load(out / "frames" / "b" / "00001_00.npy"))
