"""Unpaired examples for Diffusion-KTO: (caption, image, desirable).

Two ways to get them:
- :class:`UnpairedDataset`: a table with one image per row and a desirable/undesirable column.
- :class:`PairsAsUnpaired`: from a :class:`~diffalign.data.pairs.PairDataset` — each pair gives two
  examples, the winner (desirable) at index ``2i`` and the loser (undesirable) at ``2i + 1``, each
  with its per-role caption when the data has one. Ties carry no desirability, so the pair dataset
  must drop them (``ties="drop"``) or have none.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from diffalign.data.base import PreferenceDataset
from diffalign.data.columns import UnpairedColumns, used_columns
from diffalign.data.errors import DatasetError, raise_problems
from diffalign.data.examples import UnpairedExample, collate_unpaired
from diffalign.data.labels import desirable_flag
from diffalign.data.pairs import PairDataset
from diffalign.data.sources import TableSource
from diffalign.data.transforms import AugmentParams, Preprocess

__all__ = ["UnpairedDataset", "PairsAsUnpaired"]


class UnpairedDataset(PreferenceDataset):
    """A table of (caption, image, desirable) rows -> :class:`UnpairedExample`. Desirability labels
    are read and checked when the dataset is built (all bad ones reported at once). Attributes:
    ``num_desirable``, ``num_undesirable``."""

    kind = "unpaired"
    collate = staticmethod(collate_unpaired)

    def __init__(self, source: TableSource, columns: UnpairedColumns = UnpairedColumns(),
                 preprocess: Preprocess = Preprocess(), media: str = "image", seed: int = 0):
        super().__init__(source, preprocess, media=media, seed=seed)
        source.require_columns(used_columns(columns))
        self.columns = columns
        problems: list[str] = []
        flags = [
            self._collect(problems, self.where(r, columns.desirable), lambda v=v: desirable_flag(v))
            for r, v in enumerate(source.read_column(columns.desirable))
        ]
        raise_problems(f"{source.name}: {len(problems)} bad desirable label(s)", problems)
        self._rows = np.arange(len(source), dtype=np.int64)
        self._desirable = np.asarray(flags, dtype=bool)
        self.num_desirable = int(self._desirable.sum())
        self.num_undesirable = len(self) - self.num_desirable

    @property
    def caption_column(self) -> str:
        return self.columns.caption

    def _media_columns(self) -> list[str]:
        return [self.columns.image]

    def desirable(self, index: int) -> bool:
        return bool(self._desirable[self._check(index)])

    def desirable_flags(self) -> np.ndarray:
        """Desirability of every example, bool [len(self)] (e.g. for a weighted sampler)."""
        return self._desirable.copy()

    def _load(self, index: int, params: AugmentParams) -> UnpairedExample:
        row = int(self._rows[index])
        c = self.columns
        values = self._read(row, [c.caption, c.image])
        return UnpairedExample(
            index=index,
            caption=self._caption(row, c.caption, values[c.caption]),
            image=self._pixels(row, c.image, values[c.image], params),
            desirable=bool(self._desirable[index]),
        )

    def options(self) -> dict[str, Any]:
        return {**super().options(), "columns": dataclasses.asdict(self.columns)}


class PairsAsUnpaired(PreferenceDataset):
    """KTO examples derived from pairs: index ``2i`` = winner of pair ``i`` (desirable), ``2i + 1`` =
    its loser (undesirable). Only the needed image is decoded. Augmentation follows this dataset's own
    ``(seed, epoch, index)``; the pair dataset's preprocessing settings and seed are used."""

    kind = "unpaired"
    collate = staticmethod(collate_unpaired)

    def __init__(self, pairs: PairDataset):
        if pairs.num_ties_kept:
            raise DatasetError(
                f"{pairs.source.name}: {pairs.num_ties_kept} tie(s) kept; ties have no desirable/undesirable "
                f"image, so build the pair dataset with ties='drop' to derive unpaired examples"
            )
        super().__init__(pairs.source, pairs.preprocess, media=pairs.media, seed=pairs.seed)
        self.pairs = pairs
        self._rows = np.repeat(pairs._rows, 2)
        self.num_desirable = self.num_undesirable = len(pairs)

    @property
    def caption_column(self) -> str:
        return self.pairs.caption_column

    def _text_columns(self) -> list[str]:
        return self.pairs._text_columns()

    def _media_columns(self) -> list[str]:
        return self.pairs._media_columns()

    def desirable(self, index: int) -> bool:
        return self._check(index) % 2 == 0

    def desirable_flags(self) -> np.ndarray:
        """Desirability of every example, bool [len(self)]: True, False, True, False, ..."""
        return np.arange(len(self)) % 2 == 0

    def caption(self, index: int) -> str:
        index = self._check(index)
        pair, side = divmod(index, 2)
        row = self.source_row(index)
        values = self._read(row, self.pairs._text_columns())
        per_role = self.pairs._role_captions(pair, row, values)[side]
        return per_role if per_role is not None else self._caption(row, self.caption_column, values[self.caption_column])

    def _load(self, index: int, params: AugmentParams) -> UnpairedExample:
        pair, side = divmod(index, 2)
        caption, image = self.pairs.load_role(pair, "winner" if side == 0 else "loser", params)
        return UnpairedExample(index=index, caption=caption, image=image, desirable=side == 0)

    def options(self) -> dict[str, Any]:
        return {**self.pairs.options(), "kind": self.kind, "derived_from": "pairs"}
