"""mp4 / gif writing and reading back, and frame strips."""
import numpy as np
import pytest

from diffalign.shapes import render_video, video_prompts
from diffalign.utils import video as video_io
from diffalign.utils.video import frame_strip, read_video, write_video


def _clip():
    row = next(r for r in video_prompts("train") if r["tag"] == "motion" and "static" not in str(r))
    return render_video(row, num_frames=9, size=32, seed=0)


def test_mp4_round_trip(tmp_path):
    clip = _clip()
    path = write_video(tmp_path / "a" / "clip.mp4", clip, fps=8)
    assert path.endswith("clip.mp4")
    back = read_video(path)
    assert back.shape == clip.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - clip.astype(int))
    assert err.mean() < 4.0  # H.264 at top quality: close, not bit-exact
    # the moving object is where it was: the frames stay in order
    assert np.argmin([np.abs(back[4].astype(int) - c.astype(int)).mean() for c in clip]) == 4


def test_odd_sizes_are_padded_and_float_tensors_written(tmp_path):
    import torch

    clip = torch.rand(5, 3, 15, 21)
    back = read_video(write_video(tmp_path / "odd.mp4", clip))
    assert back.shape == (5, 16, 22, 3)


def test_gif_fallback_without_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "has_ffmpeg", lambda: False)
    clip = _clip()
    path = write_video(tmp_path / "clip.mp4", clip)
    assert path == str(tmp_path / "clip.gif")
    back = read_video(path)
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip.astype(int)).mean() < 2.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="same size"):
        write_video("x.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)])
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        write_video("x.avi", np.zeros((2, 8, 8, 3), np.uint8))


def test_frame_strip_picks_evenly_spaced_frames():
    clip = np.stack([np.full((4, 6, 3), i, np.uint8) for i in range(9)])
    strip = frame_strip(clip, max_frames=3)
    assert strip.shape == (4, 18, 3)
    assert [int(strip[0, 6 * k, 0]) for k in range(3)] == [0, 4, 8]
    assert frame_strip(clip[:2], max_frames=8).shape == (4, 12, 3)
