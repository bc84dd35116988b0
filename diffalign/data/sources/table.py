"""The row-access interface every storage reader implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

from diffalign.data.errors import DatasetError

__all__ = ["TableSource", "GLOB_CHARS", "arrow_type_is_text", "values_hold_text"]

#: characters that make a path a glob pattern.
GLOB_CHARS = frozenset("*?[")


class TableSource(ABC):
    """A table of rows read on demand. Row indices are 0-based positions in the whole table."""

    #: storage format name, one of :data:`FORMATS`.
    format: ClassVar[str]
    #: short human name of the table used in messages (a file name, or a folder name and split).
    name: str
    #: column names, in storage order.
    columns: list[str]

    @abstractmethod
    def __len__(self) -> int:
        """Number of rows."""

    @abstractmethod
    def read_row(self, index: int, columns: Sequence[str]) -> dict[str, Any]:
        """The values of ``columns`` in row ``index`` as python objects."""

    @abstractmethod
    def read_column(self, column: str) -> list[Any]:
        """Every value of one column, in row order (used for labels and captions, not media)."""

    @abstractmethod
    def where(self, index: int) -> str:
        """Where row ``index`` lives, for messages: ``"pickapic.parquet row 17"``."""

    @abstractmethod
    def media_root(self, index: int) -> Path:
        """The folder relative media paths of row ``index`` are resolved against."""

    @abstractmethod
    def files(self) -> list[Path]:
        """Every file that stores the table (not the media it points to), sorted."""

    @abstractmethod
    def column_holds_text(self, column: str) -> bool:
        """True when the column stores strings or lists of strings (for media columns: file paths)."""

    def digest(self) -> str | None:
        """A hash of the rows for tables without files (in-memory rows); None when :meth:`files`
        identifies the table."""
        return None

    def pick_columns(self, index: int, row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
        """``columns`` of ``row`` (a dict, row ``index``), or a :class:`DatasetError` naming the missing keys."""
        missing = [c for c in columns if c not in row]
        if missing:
            raise DatasetError(f"{self.where(index)}: no key {', '.join(map(repr, missing))}; "
                               f"this row has: {', '.join(row) or '(nothing)'}")
        return {c: row[c] for c in columns}

    def require_columns(self, columns: Mapping[str, str]) -> None:
        """Check every needed column exists. ``columns`` maps a role (``"image_1"``) to a column name.

        Raises :class:`DatasetError` naming the table, the missing columns and the available ones.
        """
        missing = [f"{name!r} ({role})" for role, name in columns.items() if name not in self.columns]
        if missing:
            raise DatasetError(
                f"{self.name}: column{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found; "
                f"available columns: {', '.join(self.columns) or '(none)'}"
            )

    def check_index(self, index: int) -> int:
        n = len(self)
        if not isinstance(index, int) or not 0 <= index < n:
            raise IndexError(f"{self.name}: row {index!r} out of range for {n} rows")
        return index


def values_hold_text(values: Iterable[Any]) -> bool:
    """True when the first non-null value is a string or a list of strings (for rows held as dicts)."""
    for value in values:
        if value is None:
            continue
        if isinstance(value, list):
            return all(isinstance(v, str) for v in value)
        return isinstance(value, str)
    return False


def arrow_type_is_text(arrow_type) -> bool:
    """True for arrow string types and (nested) lists of them."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return True
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return arrow_type_is_text(arrow_type.value_type)
    return False
