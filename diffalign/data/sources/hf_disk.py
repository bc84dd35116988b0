"""Reader for folders written by ``datasets``' ``save_to_disk``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from diffalign.data.errors import DatasetError
from diffalign.data.sources.table import TableSource, arrow_type_is_text

__all__ = ["HFDiskSource"]


class HFDiskSource(TableSource):
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (memory-mapped).

    Rows are read in arrow format, so ``datasets.Image`` columns come back undecoded as
    ``{"bytes": ..., "path": ...}`` dicts; relative paths are rooted at the dataset folder.
    """

    format = "hf"

    def __init__(self, path: str | os.PathLike, split: str = "train"):
        import datasets

        self.path = Path(path)
        try:
            loaded = datasets.load_from_disk(os.fspath(self.path))
        except FileNotFoundError as e:
            raise DatasetError(f"{self.path}: not a saved `datasets` folder ({e})") from e
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DatasetError(f"{self.path}: no split {split!r}; available splits: {', '.join(loaded)}")
            self.split: str | None = split
            dataset = loaded[split]
            self.name = f"{self.path.name}[{split}]"
        else:
            self.split = None
            dataset = loaded
            self.name = self.path.name
        self.dataset = dataset
        self.columns = list(dataset.column_names)
        self._arrow = dataset.with_format("arrow")

    def __len__(self) -> int:
        return self.dataset.num_rows

    def read_row(self, index: int, columns: Sequence[str]) -> dict[str, Any]:
        table = self._arrow[self.check_index(index)]
        return {c: table.column(c)[0].as_py() for c in columns}

    def read_column(self, column: str) -> list[Any]:
        return self._arrow[column].to_pylist()

    def where(self, index: int) -> str:
        return f"{self.name} row {index}"

    def media_root(self, index: int) -> Path:
        return self.path

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.rglob("*") if p.is_file())

    def column_holds_text(self, column: str) -> bool:
        return arrow_type_is_text(self.dataset.data.schema.field(column).type)
