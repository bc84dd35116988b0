"""Video files: write clips as mp4 (imageio + imageio-ffmpeg, H.264 yuv420p, plays in browsers) with
a GIF fallback when ffmpeg is missing, read them back, and lay frames out as a strip.

Frames are anything :func:`diffalign.utils.images.to_uint8` takes, per frame: a uint8 array
[T, H, W, 3], a float array / tensor [T, 3, H, W] or [T, H, W, 3] in [0, 1], or a list of images.
"""
from __future__ import annotations

import os
import warnings
from functools import lru_cache

import numpy as np

from diffalign.utils.images import to_uint8

DEFAULT_FPS = 8
VIDEO_SUFFIXES = (".mp4", ".gif")


@lru_cache(maxsize=None)
def has_ffmpeg() -> bool:
    """True when imageio-ffmpeg (and its ffmpeg binary) can be used."""
    try:
        import imageio_ffmpeg

        return bool(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:  # noqa: BLE001 - missing package or binary
        return False


def as_video_array(frames) -> np.ndarray:
    """Frames (see the module docstring) -> uint8 array [T, H, W, 3]."""
    if hasattr(frames, "ndim") and frames.ndim == 4:
        items = [to_uint8(frames[i]) for i in range(frames.shape[0])]
    else:
        items = [to_uint8(f) for f in frames]
    if not items:
        raise ValueError("a video needs at least one frame")
    if len({f.shape for f in items}) != 1:
        raise ValueError(f"all frames of a video need the same size, got {sorted({f.shape for f in items})}")
    return np.stack(items)


def write_video(path: str | os.PathLike, frames, fps: int = DEFAULT_FPS) -> str:
    """Write ``frames`` to ``path`` (``.mp4`` or ``.gif``) and return the path written: an ``.mp4``
    request becomes a ``.gif`` next to it when ffmpeg is missing. Frames of odd width or height are
    padded by one edge pixel for H.264."""
    import imageio.v3 as iio

    arr = as_video_array(frames)
    path = os.fspath(path)
    stem, suffix = os.path.splitext(path)
    if suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"write_video writes .mp4 or .gif, got {path!r}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if suffix.lower() == ".mp4" and has_ffmpeg():
        pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
        if pad_h or pad_w:
            arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iio.imwrite(path, arr, plugin="FFMPEG", fps=fps, codec="libx264", quality=10, pixelformat="yuv420p",
                        macro_block_size=1, ffmpeg_log_level="error")
        return path
    path = stem + ".gif"
    iio.imwrite(path, arr, plugin="pillow", duration=int(round(1000 / fps)), loop=0)
    return path


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Read an mp4 / gif back: uint8 array [T, H, W, 3]."""
    import imageio.v3 as iio

    path = os.fspath(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.lower().endswith(".gif"):
            arr = iio.imread(path, plugin="pillow", index=None, mode="RGB")
        else:
            arr = iio.imread(path, plugin="FFMPEG", index=None)
    return np.asarray(arr, dtype=np.uint8)[..., :3]


def frame_strip(frames, max_frames: int = 8) -> np.ndarray:
    """At most ``max_frames`` frames, evenly spaced (first and last included), side by side:
    uint8 array [H, K * W, 3] (a video's tile in sample grids)."""
    arr = as_video_array(frames)
    idx = np.unique(np.round(np.linspace(0, len(arr) - 1, min(max_frames, len(arr)))).astype(int))
    return np.concatenate(list(arr[idx]), axis=1)
