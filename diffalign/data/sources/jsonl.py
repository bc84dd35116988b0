"""Reader for a jsonl file (one JSON object per line) whose media values are file paths."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from diffalign.data.errors import DatasetError
from diffalign.data.sources.table import TableSource, values_hold_text

__all__ = ["JsonlSource"]


class JsonlSource(TableSource):
    """A jsonl file: one JSON object per line (blank lines are skipped). Media values are file paths,
    relative to the jsonl's folder (or absolute). Parsed once, when opened; a line that is not a JSON
    object raises :class:`DatasetError` with its line number."""

    format = "jsonl"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"data file not found: {self.path}")
        self.name = self.path.name
        self.rows: list[dict[str, Any]] = []
        self.line_numbers: list[int] = []
        columns: dict[str, None] = {}
        with open(self.path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{self.name} line {line_no}: invalid JSON ({e})") from e
                if not isinstance(row, dict):
                    raise DatasetError(f"{self.name} line {line_no}: expected a JSON object, got {type(row).__name__}")
                self.rows.append(row)
                self.line_numbers.append(line_no)
                columns.update(dict.fromkeys(row))
        self.columns = list(columns)

    def __len__(self) -> int:
        return len(self.rows)

    def read_row(self, index: int, columns: Sequence[str]) -> dict[str, Any]:
        return self.pick_columns(index, self.rows[self.check_index(index)], columns)

    def read_column(self, column: str) -> list[Any]:
        values = []
        for i, row in enumerate(self.rows):
            if column not in row:
                raise DatasetError(f"{self.where(i)}: no key {column!r}; this row has: {', '.join(row) or '(nothing)'}")
            values.append(row[column])
        return values

    def where(self, index: int) -> str:
        return f"{self.name} row {index} (line {self.line_numbers[index]})"

    def media_root(self, index: int) -> Path:
        return self.path.parent

    def files(self) -> list[Path]:
        return [self.path]

    def column_holds_text(self, column: str) -> bool:
        return values_hold_text(row.get(column) for row in self.rows)
