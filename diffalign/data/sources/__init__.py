"""Row access to a table on disk, whatever its storage: a saved Hugging Face ``datasets`` folder,
parquet file(s) or a jsonl file.

:func:`open_source` picks the reader from the path (:func:`detect_format`, overridable) and returns
a :class:`TableSource`: a random-access sequence of rows that reads only the columns asked for,
knows how to describe where a row lives (``"pickapic.parquet row 17"``) for error messages, where
relative media paths are rooted, and which files hold the table (for fingerprints). Values come
back as plain python objects exactly as stored (bytes, strings, numbers, lists, and
``{"bytes", "path"}`` dicts for ``datasets.Image`` columns); decoding media is not this module's job.
"""
from __future__ import annotations

import os
from pathlib import Path

from diffalign.data.errors import DatasetError
from diffalign.data.sources.hf_disk import HFDiskSource
from diffalign.data.sources.jsonl import JsonlSource
from diffalign.data.sources.memory import MemorySource
from diffalign.data.sources.parquet import ParquetSource
from diffalign.data.sources.table import GLOB_CHARS, TableSource

__all__ = [
    "FORMATS",
    "TableSource",
    "HFDiskSource",
    "ParquetSource",
    "JsonlSource",
    "MemorySource",
    "detect_format",
    "open_source",
]

#: storage formats :func:`open_source` understands.
FORMATS = ("hf", "parquet", "jsonl")

_HF_MARKERS = ("dataset_dict.json", "state.json")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the storage format of ``path``:

    - a glob pattern (``*``, ``?``, ``[``) or a ``.parquet`` file: ``"parquet"``;
    - a ``.jsonl`` file: ``"jsonl"``;
    - a folder with ``dataset_dict.json`` or ``state.json`` (what ``save_to_disk`` writes): ``"hf"``;
    - a folder with exactly one ``*.jsonl`` at its top level and no parquet files: ``"jsonl"``;
    - a folder with ``*.parquet`` files (searched recursively) and no jsonl: ``"parquet"``.
    Anything else raises :class:`DatasetError`; pass ``format=`` to :func:`open_source` to override.
    """
    text = os.fspath(path)
    if GLOB_CHARS & set(text):
        return "parquet"
    p = Path(text)
    if not p.exists():
        raise DatasetError(f"data path not found: {text}")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".parquet":
            return "parquet"
        if suffix == ".jsonl":
            return "jsonl"
        raise DatasetError(f"{text}: cannot tell the data format from the file suffix {suffix!r}; "
                           f"expected .parquet or .jsonl (or pass format=)")
    if any((p / marker).is_file() for marker in _HF_MARKERS):
        return "hf"
    jsonls = sorted(p.glob("*.jsonl"))
    parquets = sorted(p.rglob("*.parquet"))
    if jsonls and parquets:
        raise DatasetError(f"{text}: folder holds both .jsonl and .parquet files; pass format='jsonl' or 'parquet'")
    if len(jsonls) > 1:
        raise DatasetError(f"{text}: folder holds several .jsonl files ({', '.join(j.name for j in jsonls)}); "
                           f"pass the one to load")
    if jsonls:
        return "jsonl"
    if parquets:
        return "parquet"
    raise DatasetError(f"{text}: no dataset found (looked for a saved `datasets` folder with dataset_dict.json or "
                       f"state.json, *.parquet files, or one *.jsonl file)")


def open_source(path: str | os.PathLike, format: str = "auto", split: str = "train") -> TableSource:
    """Open a table: ``format`` is ``"auto"`` (see :func:`detect_format`), ``"hf"``, ``"parquet"`` or
    ``"jsonl"``. ``split`` chooses the split of a saved ``DatasetDict`` (ignored otherwise)."""
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "hf":
        return HFDiskSource(path, split=split)
    if fmt == "parquet":
        return ParquetSource(path)
    if fmt == "jsonl":
        if Path(path).is_dir():
            found = sorted(Path(path).glob("*.jsonl"))
            if len(found) != 1:
                raise DatasetError(f"{os.fspath(path)}: expected exactly one .jsonl file in the folder, found {len(found)}")
            path = found[0]
        return JsonlSource(path)
    raise DatasetError(f"unknown data format {format!r}; choose one of: auto, {', '.join(FORMATS)}")
