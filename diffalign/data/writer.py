"""Write preference pairs in the on-disk layouts the loaders read (Pick-a-Pic columns).

Each pair is a mapping with ``caption``, ``jpg_0``, ``jpg_1`` and ``label_0`` (1: image 0 preferred,
0: image 1 preferred, 0.5: tie), plus any extra JSON-friendly fields (``soft_label``, judge scores,
``caption_0``/``caption_1``, ...) which are stored as further columns. Images may be PIL images,
uint8 ``[H, W, 3]`` arrays, float ``[3, H, W]`` / ``[H, W, 3]`` arrays or tensors in [0, 1], or
already-encoded bytes (stored unchanged). ``label_1 = 1 - label_0`` is added, as in Pick-a-Pic.

- :func:`write_pairs_jsonl`: ``folder/pairs.jsonl`` + ``folder/images/000012_0.png`` (paths in the
  jsonl are relative to its folder); ``open_source(folder)`` reads it back.
- :func:`write_pairs_hf`: a ``datasets`` folder (``save_to_disk``) with the images embedded as
  encoded bytes in binary ``jpg_0`` / ``jpg_1`` columns, like Pick-a-Pic v2.

PNG (lossless) is the default so generated pixels survive exactly; ``image_format="jpeg"`` is smaller.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from PIL import Image

from diffalign.data.errors import DatasetError
from diffalign.data.labels import as_caption, pair_outcome
from diffalign.utils.images import to_uint8

__all__ = ["encode_image", "write_pairs_jsonl", "write_pairs_hf"]

_IMAGE_KEYS = ("jpg_0", "jpg_1")
_SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "bmp": ".bmp"}


def encode_image(image: Any, image_format: str = "png") -> tuple[bytes, str]:
    """``(encoded bytes, file suffix)``; bytes inputs are kept as they are (suffix from their format)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "png").lower()
        return data, _SUFFIX.get(fmt, f".{fmt}")
    fmt = image_format.lower().replace("jpg", "jpeg")
    if fmt not in _SUFFIX:
        raise ValueError(f"image_format must be one of {', '.join(_SUFFIX)}, got {image_format!r}")
    buf = io.BytesIO()
    extra = {"quality": 95} if fmt == "jpeg" else {}
    Image.fromarray(to_uint8(image)).save(buf, format=fmt.upper(), **extra)
    return buf.getvalue(), _SUFFIX[fmt]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _checked_pairs(pairs: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Validate each pair; yield ``(i, fields)`` with JSON-friendly extras and ``label_1`` added."""
    for i, pair in enumerate(pairs):
        missing = [k for k in ("caption", *_IMAGE_KEYS, "label_0") if k not in pair]
        if missing:
            raise DatasetError(f"pair {i}: missing {', '.join(missing)}; a pair needs caption, jpg_0, jpg_1, label_0")
        try:
            as_caption(pair["caption"])
            label_0 = float(_jsonable(pair["label_0"]))
            pair_outcome(label_0)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"pair {i}: {e}") from e
        fields = {k: (v if k in _IMAGE_KEYS else _jsonable(v)) for k, v in pair.items()}
        fields["label_0"], fields["label_1"] = label_0, 1.0 - label_0
        extras = {k: v for k, v in fields.items() if k not in _IMAGE_KEYS}
        try:
            json.dumps(extras)
        except TypeError as e:
            raise DatasetError(f"pair {i}: field values must be JSON-friendly ({e})") from e
        yield i, fields


def _prepare_folder(folder: Path, marker: Path, overwrite: bool) -> None:
    if marker.exists() and not overwrite:
        raise DatasetError(f"{marker} already exists; pass overwrite=True to replace it")
    folder.mkdir(parents=True, exist_ok=True)


def write_pairs_jsonl(
    folder: str | os.PathLike,
    pairs: Iterable[Mapping[str, Any]],
    image_format: str = "png",
    filename: str = "pairs.jsonl",
    overwrite: bool = False,
) -> Path:
    """Write ``folder/filename`` (one JSON object per pair) and ``folder/images/*``; returns the jsonl
    path. The jsonl appears only once every image is written (it is renamed into place)."""
    folder = Path(folder)
    out = folder / filename
    _prepare_folder(folder, out, overwrite)
    images = folder / "images"
    images.mkdir(exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i, fields in _checked_pairs(pairs):
            record = dict(fields)
            for side, key in enumerate(_IMAGE_KEYS):
                data, suffix = encode_image(fields[key], image_format)
                rel = Path("images") / f"{i:06d}_{side}{suffix}"
                (folder / rel).write_bytes(data)
                record[key] = rel.as_posix()
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return out


def write_pairs_hf(
    folder: str | os.PathLike,
    pairs: Iterable[Mapping[str, Any]],
    image_format: str = "png",
    overwrite: bool = False,
) -> Path:
    """Save the pairs as a ``datasets`` folder (one split-less ``Dataset``) with encoded image bytes
    in binary ``jpg_0``/``jpg_1`` columns; returns the folder."""
    import datasets

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise DatasetError(f"{folder} is not empty; pass overwrite=True to replace it")
        shutil.rmtree(folder)
    columns: dict[str, list[Any]] = {}
    count = 0
    for i, fields in _checked_pairs(pairs):
        row = {k: (encode_image(v, image_format)[0] if k in _IMAGE_KEYS else v) for k, v in fields.items()}
        if columns and set(row) != set(columns):
            raise DatasetError(f"pair {i}: fields {sorted(row)} differ from the first pair's {sorted(columns)}")
        for k, v in row.items():
            columns.setdefault(k, []).append(v)
        count += 1
    if not count:
        raise DatasetError("no pairs to write")
    features = datasets.Dataset.from_dict({k: v for k, v in columns.items() if k not in _IMAGE_KEYS}).features
    for key in _IMAGE_KEYS:
        features[key] = datasets.Value("binary")
    datasets.Dataset.from_dict(columns, features=features).save_to_disk(os.fspath(folder))
    return folder
