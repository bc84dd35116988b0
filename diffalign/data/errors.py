"""The one exception the data layer raises for bad data or a bad data configuration."""
from __future__ import annotations

from typing import Sequence


class DatasetError(ValueError):
    """Bad preference data: a missing file or column, an undecodable image, an invalid label...

    The message always says where: the source file (or folder), the row index and the column or
    media file involved, e.g. ``pickapic.parquet row 17 column jpg_1: cannot decode image (...)``.
    When one error stands for several bad rows (label checks, ``validate()``), ``problems`` holds one
    message per bad row; otherwise it holds just this error's message.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None):
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]


def raise_problems(summary: str, problems: Sequence[str], shown: int = 20) -> None:
    """Raise one :class:`DatasetError` for many bad rows (if there are any): the summary, then the
    first ``shown`` problems, one per line, and how many more there are."""
    if not problems:
        return
    lines = list(problems[:shown])
    if len(problems) > shown:
        lines.append(f"... and {len(problems) - shown} more")
    raise DatasetError(f"{summary}:\n  " + "\n  ".join(lines), problems)
