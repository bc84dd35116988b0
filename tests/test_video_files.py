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


@pytest.mark.slow
def test_bad_videos_in_a_pair_set_give_one_line_errors_naming_file_and_row(tmp_path):
    import json

    import diffalign  # noqa: F401  (compat shim first)
    from diffalign.data import DataConfig, DatasetError, build_dataset

    write_video(tmp_path / "a.mp4", np.full((9, 16, 16, 3), 100, np.uint8))
    write_video(tmp_path / "short.mp4", np.full((5, 16, 16, 3), 50, np.uint8))
    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 20)
    rows = [{"caption": "x", "video_0": "a.mp4", "video_1": v, "segment_labels": [1, 0, -1]}
            for v in ("short.mp4", "broken.mp4", "a.mp4")]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = build_dataset(DataConfig(path=str(tmp_path / "p.jsonl"), kind="video_pairs", resolution=16))
    with pytest.raises(DatasetError, match=r"row 0 .*\(9, 3, 16, 16\) but video_1 has \(5, 3, 16, 16\)"):
        ds[0]
    with pytest.raises(DatasetError) as e:
        ds[1]
    assert "row 1" in str(e.value) and "broken.mp4" in str(e.value) and "\n" not in str(e.value)
    assert tuple(ds[2].video_1.shape) == (9, 3, 16, 16)
