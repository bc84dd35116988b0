"""Ranked lists for RankDPO: (caption, K images, K scores with higher = better).

Each row holds a list of images (bytes, ``{"bytes", "path"}`` dicts or paths) and either a list of
scores (higher = better; Syn-Pic's phi in [0, 1] is what RankDPO's gain 2**phi expects) or, if
``columns.ranks`` is set, a list of ranks (1 = best) converted to win-fraction scores with
:func:`~diffalign.data.labels.ranks_to_scores`. Lists are checked when read (at least 2 images, one
score per image); K may vary between rows, but a batch needs one K (batch size 1 otherwise).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from diffalign.data.base import PreferenceDataset
from diffalign.data.columns import RankedColumns, used_columns
from diffalign.data.errors import DatasetError
from diffalign.data.examples import RankedExample, collate_ranked
from diffalign.data.labels import check_image_list, list_scores, ranks_to_scores
from diffalign.data.sources import TableSource
from diffalign.data.transforms import AugmentParams, Preprocess

__all__ = ["RankedDataset"]


class RankedDataset(PreferenceDataset):
    """A table of ranked image lists -> :class:`RankedExample` (``images`` [K, 3, H, W], ``scores`` [K])."""

    kind = "ranked"
    collate = staticmethod(collate_ranked)

    def __init__(
        self,
        source: TableSource,
        columns: RankedColumns = RankedColumns(),
        preprocess: Preprocess = Preprocess(),
        media: str = "image",
        seed: int = 0,
    ):
        super().__init__(source, preprocess, media=media, seed=seed)
        needed = used_columns(columns)
        if columns.ranks is not None:
            needed.pop("scores", None)
        source.require_columns(needed)
        self.columns = columns
        self._rows = np.arange(len(source), dtype=np.int64)

    @property
    def caption_column(self) -> str:
        return self.columns.caption

    def _media_columns(self) -> list[str]:
        return [self.columns.images]

    def _load(self, index: int, params: AugmentParams) -> RankedExample:
        row = int(self._rows[index])
        c = self.columns
        label_col = c.ranks if c.ranks is not None else c.scores
        values = self._read(row, [c.caption, c.images, label_col])
        images = values[c.images]
        try:
            check_image_list(images, c.images)
        except ValueError as e:
            raise DatasetError(f"{self.where(row, c.images)}: {e}") from e
        try:
            k = len(images)
            scores = ranks_to_scores(values[label_col], k) if c.ranks is not None else list_scores(values[label_col], k)
        except ValueError as e:
            raise DatasetError(f"{self.where(row, label_col)}: {e}") from e
        pixels = [self._pixels(row, c.images, v, params, item=k) for k, v in enumerate(images)]
        shapes = {tuple(p.shape) for p in pixels}
        if len(shapes) > 1:
            raise DatasetError(f"{self.where(row, c.images)}: images preprocess to different shapes {sorted(shapes)}")
        return RankedExample(
            index=index,
            caption=self._caption(row, c.caption, values[c.caption]),
            images=torch.stack(pixels),
            scores=torch.tensor(scores, dtype=torch.float32),
        )

    def options(self) -> dict[str, Any]:
        return {**super().options(), "columns": dataclasses.asdict(self.columns)}
