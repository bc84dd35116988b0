"""Decode stored images and videos into numpy arrays.

- :func:`load_image` -> uint8 ``[H, W, 3]`` from encoded bytes (JPEG, PNG, ...), a
  ``{"bytes", "path"}`` dict (``datasets.Image`` storage), a file path, a PIL image or an array.
- :func:`load_video` -> ``[F, H, W, 3]`` (uint8, or float32 in [0, 1]) from a video file (gif via
  Pillow; mp4/webm/mov through ``imageio-ffmpeg``, in the default install), a folder of frame images, a ``.npy`` /
  ``.npz`` array, a list of frames, or encoded bytes.

Relative paths are resolved against ``root``. Failures raise :class:`MediaError` with a message
that names the file but not the row; the datasets add the row and column.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["MediaError", "IMAGE_SUFFIXES", "load_image", "load_video", "media_paths"]

#: file suffixes treated as still images (frame folders are made of these).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_ARRAY_SUFFIXES = (".npy", ".npz")
_FFMPEG_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")


class MediaError(Exception):
    """A media value that cannot be decoded; the message says why and names the file if there is one."""


def _resolve(path: str | os.PathLike, root: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or root is None else Path(root) / p


def _unwrap(value: Any) -> Any:
    """``datasets`` Image/Video storage ``{"bytes": b, "path": p}`` -> the bytes if present, else the path."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise MediaError(f"media dict has neither bytes nor path (keys: {', '.join(value) or 'none'})")
    return value


def _decode_image_bytes(data: bytes, label: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError as e:
        raise MediaError(f"cannot decode image{label} (not a known image format; {len(data)} bytes)") from e
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad data
        raise MediaError(f"cannot decode image{label} ({type(e).__name__}: {e})") from e


def _image_array(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3:
        raise MediaError(f"expected an image array [H, W, C] or [C, H, W], got shape {arr.shape}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.shape[-1] != 3:
        raise MediaError(f"expected 1, 3 or 4 channels, got shape {arr.shape}")
    return _check_dtype(arr)


def _check_dtype(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise MediaError(f"float pixels must be finite and in [0, 1], got range [{arr.min()}, {arr.max()}]")
        return arr
    raise MediaError(f"pixels must be uint8 or float in [0, 1], got dtype {arr.dtype}")


def load_image(value: Any, root: Path | None = None) -> np.ndarray:
    """One image -> ``[H, W, 3]`` array (uint8, or float32 in [0, 1] for float array inputs)."""
    if value is None:
        raise MediaError("no image (the value is empty)")
    value = _unwrap(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode_image_bytes(bytes(value), "")
    if isinstance(value, (str, os.PathLike)):
        path = _resolve(value, root)
        if not path.is_file():
            raise MediaError(f"image file not found: {path}")
        return _decode_image_bytes(path.read_bytes(), f" file {path}")
    if isinstance(value, Image.Image):
        return np.asarray(value.convert("RGB"))
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        return _image_array(np.asarray(value))
    raise MediaError(f"cannot read an image from a {type(value).__name__}")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _video_array(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3:  # grayscale frames [F, H, W]
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4:
        raise MediaError(f"expected video frames [F, H, W, C] or [F, C, H, W], got shape {arr.shape}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[1] in (1, 3, 4):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.shape[-1] != 3:
        raise MediaError(f"expected 1, 3 or 4 channels per frame, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise MediaError("video has no frames")
    return _check_dtype(arr)


def _stack_frames(frames: list[np.ndarray], label: str) -> np.ndarray:
    if not frames:
        raise MediaError(f"video{label} has no frames")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise MediaError(f"video{label} frames differ in size: {sorted(shapes)}")
    return _video_array(np.stack(frames))


def _read_array_file(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise MediaError(f"cannot read frame array file {path} ({type(e).__name__}: {e})") from e
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if not keys:
                raise MediaError(f"{path} holds no arrays")
            key = "frames" if "frames" in keys else keys[0]
            return loaded[key]
    return loaded


def _read_with_imageio(source: Any, label: str, suffix: str) -> np.ndarray:
    import imageio.v3 as iio

    try:
        kwargs = {"extension": suffix} if isinstance(source, bytes) and suffix else {}
        with warnings.catch_warnings():  # imageio probes every plugin; some warn that they are deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.asarray(iio.imread(source, index=None, **kwargs))
    except Exception as e:  # noqa: BLE001 - imageio plugins raise many types
        from diffalign.utils.video import has_ffmpeg

        hint = ""
        if suffix in _FFMPEG_SUFFIXES and not has_ffmpeg():
            hint = ("; reading this format needs the `imageio-ffmpeg` package (pip install imageio-ffmpeg), "
                    "or store the frames as a folder of PNG files or a .npy/.npz array")
        first_line = (str(e).strip().splitlines() or [""])[0]  # ffmpeg appends its whole log: keep one line
        raise MediaError(f"cannot decode video{label} ({type(e).__name__}: {first_line}){hint}") from e


def load_video(value: Any, root: Path | None = None) -> np.ndarray:
    """One video -> ``[F, H, W, 3]`` array (uint8, or float32 in [0, 1] for float arrays)."""
    if value is None:
        raise MediaError("no video (the value is empty)")
    value = _unwrap(value)
    if isinstance(value, (list, tuple)):
        return _stack_frames([load_image(v, root) for v in value], "")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _video_array(_read_with_imageio(bytes(value), "", ""))
    if isinstance(value, (str, os.PathLike)):
        path = _resolve(value, root)
        if path.is_dir():
            frames = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
            if not frames:
                raise MediaError(f"frame folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            return _stack_frames([load_image(p) for p in frames], f" folder {path}")
        if not path.is_file():
            raise MediaError(f"video file not found: {path}")
        suffix = path.suffix.lower()
        if suffix in _ARRAY_SUFFIXES:
            return _video_array(_read_array_file(path))
        return _video_array(_read_with_imageio(path, f" file {path}", suffix))
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        return _video_array(np.asarray(value))
    raise MediaError(f"cannot read a video from a {type(value).__name__}")


def media_paths(value: Any, root: Path | None = None) -> list[Path]:
    """The files a stored media value points to (empty for embedded bytes): a path, each path of a
    list, and every file of a frame folder. Used for fingerprints; missing files are still listed."""
    value = _unwrap(value) if isinstance(value, dict) and (value.get("bytes") is not None or value.get("path")) else value
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in media_paths(v, root)]
    if isinstance(value, (str, os.PathLike)):
        path = _resolve(value, root)
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.is_file())
        return [path]
    return []
