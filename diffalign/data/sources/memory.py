"""Rows already in memory: a ``datasets.Dataset``, a torch map-style dataset of dicts or a list of
dicts, with the same columns as a file of the data kind (images as PIL images, arrays, bytes,
``{"bytes", "path"}`` dicts or file paths). What the Python API's ``dataset=`` argument becomes."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diffalign.data.errors import DatasetError
from diffalign.data.sources.table import TableSource, arrow_type_is_text, values_hold_text

__all__ = ["MemorySource", "content_digest"]


class MemorySource(TableSource):
    """Random access to in-memory rows. A ``datasets.Dataset`` is read in arrow format (image
    columns stay undecoded, as from a saved folder); anything else must give a dict per index."""

    format = "memory"

    def __init__(self, rows: Any, name: str | None = None, media_root: str | os.PathLike = "."):
        self._root = Path(media_root)
        self._hf = _is_hf_dataset(rows)
        if self._hf:
            self.dataset = rows
            self.columns = list(rows.column_names)
            self._arrow = rows.with_format("arrow")
            self.name = name or f"datasets.Dataset ({rows.num_rows} rows)"
            return
        if not hasattr(rows, "__getitem__") or not hasattr(rows, "__len__"):
            raise DatasetError(
                f"dataset=: expected a datasets.Dataset, a torch map-style dataset or a list of dicts, got {type(rows).__name__}"
            )
        self.rows = rows
        self.name = name or f"{type(rows).__name__} ({len(rows)} rows)"
        first = rows[0] if len(rows) else {}
        if not isinstance(first, dict):
            raise DatasetError(f"{self.name}: row 0 is a {type(first).__name__}, not a dict of columns")
        self.columns = list(first)

    def __len__(self) -> int:
        return self.dataset.num_rows if self._hf else len(self.rows)

    def read_row(self, index: int, columns: Sequence[str]) -> dict[str, Any]:
        index = self.check_index(index)
        if self._hf:
            table = self._arrow[index]
            return {c: table.column(c)[0].as_py() for c in columns}
        row = self.rows[index]
        if not isinstance(row, dict):
            raise DatasetError(f"{self.where(index)}: a {type(row).__name__}, not a dict of columns")
        return self.pick_columns(index, row, columns)

    def read_column(self, column: str) -> list[Any]:
        if self._hf:
            return self._arrow[column].to_pylist()
        return [self.read_row(i, [column])[column] for i in range(len(self))]

    def where(self, index: int) -> str:
        return f"{self.name} row {index}"

    def media_root(self, index: int) -> Path:
        return self._root

    def files(self) -> list[Path]:
        return []

    def column_holds_text(self, column: str) -> bool:
        if self._hf:
            return arrow_type_is_text(self.dataset.data.schema.field(column).type)
        return values_hold_text(self.rows[i].get(column) for i in range(len(self)))

    def digest(self) -> str:
        """A hash of the rows' contents (``datasets``' own fingerprint for a ``datasets.Dataset``),
        so the latent cache tells two in-memory data sets apart."""
        if self._hf:
            return f"datasets:{self.dataset._fingerprint}"
        return content_digest(self.read_row(i, self.columns) for i in range(len(self)))


def content_digest(rows) -> str:
    """SHA-256 of every value of every row (arrays and images by their bytes, shape and dtype)."""
    h = hashlib.sha256()
    for row in rows:
        for key in sorted(row):
            h.update(str(key).encode())
            _update(h, row[key])
    return h.hexdigest()[:32]


def _update(h, value: Any) -> None:
    from PIL import Image

    if isinstance(value, Image.Image):
        value = np.asarray(value)
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensors
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        h.update(f"array{value.shape}{value.dtype}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (bytes, bytearray, memoryview)):
        h.update(b"bytes")
        h.update(bytes(value))
    elif isinstance(value, dict):
        for key in sorted(value):
            h.update(str(key).encode())
            _update(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"list{len(value)}".encode())
        for v in value:
            _update(h, v)
    else:
        h.update(repr(value).encode())


def _is_hf_dataset(rows: Any) -> bool:
    return type(rows).__module__.startswith("datasets.") and hasattr(rows, "with_format") and hasattr(rows, "column_names")
