"""Preference pairs (Pick-a-Pic layout by default) normalised to winner / loser.

Every stored pair ``(caption, image_0, image_1, label_0[, soft label][, second captions])`` becomes a
:class:`~diffalign.data.examples.PairExample` ``(caption, winner, loser, soft_label, is_tie,
caption_w, caption_l)``: the images are swapped when image 1 won, so a trainer never sees
``label_0``.

Ties (``label_0 == 0.5``), per ``ties``:
- ``"drop"`` (default; every official DPO-family script does this): the row is not an example;
  ``num_ties_dropped`` counts them.
- ``"keep"``: the pair is kept as stored, image 0 in the ``winner`` slot, with ``is_tie=True`` and
  ``soft_label = 0.5`` unless a soft-label column says otherwise. Meaning: "neither is preferred".
  With SmPO's soft-label scaling gamma·(2p - 1) a tie then contributes nothing; hard-label losses
  (Diffusion-DPO, MaPO, ...) would read it as "image 0 wins", so a trainer using one must mask
  ``is_tie`` or use ``"drop"``.
- ``"error"``: a tie raises :class:`DatasetError` (for data that should have none).

Soft labels (SmPO): with ``columns.soft_label`` set, ``soft_label`` comes from that column, a
probability in [0, 1]. ``soft_label_of="winner"`` (default): the stored value is already the
probability that the winner is preferred (SmPO's p = sigmoid(r_w - r_l)). ``"image_0"``: it is the
probability that image 0 is preferred, and becomes 1 - p when image 1 is the winner. Without the
column: 1.0, or 0.5 for a kept tie.

Second captions (DCPO/TDPO): ``caption_0``/``caption_1`` columns follow the images (swapped with
them), ``caption_w``/``caption_l`` columns are taken as they are.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from diffalign.data.base import PreferenceDataset
from diffalign.data.columns import PairColumns, used_columns
from diffalign.data.errors import DatasetError, raise_problems
from diffalign.data.examples import PairExample, collate_pairs
from diffalign.data.labels import IMAGE_1_WINS, TIE, pair_outcome, probability
from diffalign.data.sources import TableSource
from diffalign.data.transforms import AugmentParams, Preprocess

__all__ = ["TIE_POLICIES", "SOFT_LABEL_OF", "PairDataset"]

TIE_POLICIES = ("drop", "keep", "error")
SOFT_LABEL_OF = ("winner", "image_0")


class PairDataset(PreferenceDataset):
    """Pairs -> :class:`PairExample` (see the module docstring for ties and soft labels).

    ``source``: an opened table (:func:`~diffalign.data.sources.open_source`). ``columns``: column
    names (Pick-a-Pic defaults). ``preprocess``: resize/crop/flip, applied identically to winner
    and loser. ``media``: ``"image"`` or ``"video"`` (whole-video pairs, pixels [F, 3, H, W]).
    Labels are read and checked when the dataset is built; all bad labels are reported at once.
    Attributes: ``num_ties_dropped``, ``columns``, ``ties``, ``soft_label_of``.
    """

    kind = "pairs"
    collate = staticmethod(collate_pairs)

    def __init__(
        self,
        source: TableSource,
        columns: PairColumns = PairColumns(),
        preprocess: Preprocess = Preprocess(),
        ties: str = "drop",
        soft_label_of: str = "winner",
        media: str = "image",
        seed: int = 0,
    ):
        super().__init__(source, preprocess, media=media, seed=seed)
        if ties not in TIE_POLICIES:
            raise DatasetError(f"ties must be one of {', '.join(TIE_POLICIES)}, got {ties!r}")
        if soft_label_of not in SOFT_LABEL_OF:
            raise DatasetError(f"soft_label_of must be one of {', '.join(SOFT_LABEL_OF)}, got {soft_label_of!r}")
        source.require_columns(used_columns(columns))
        self.columns = columns
        self.ties = ties
        self.soft_label_of = soft_label_of
        self._index_rows()

    def _index_rows(self) -> None:
        cols, source = self.columns, self.source
        n = len(source)
        labels = source.read_column(cols.label_0) if cols.label_0 else None
        softs = source.read_column(cols.soft_label) if cols.soft_label else None
        rows, swapped, soft, tie = [], [], [], []
        problems: list[str] = []
        dropped = 0
        for r in range(n):
            outcome = "image_0"
            if labels is not None:
                outcome = self._collect(problems, self.where(r, cols.label_0), lambda: pair_outcome(labels[r]))
            p = None
            if softs is not None:
                p = self._collect(problems, self.where(r, cols.soft_label), lambda: probability(softs[r], cols.soft_label))
                if p is None:
                    continue
            if outcome is None:
                continue
            if outcome == TIE and self.ties == "drop":
                dropped += 1
                continue
            if outcome == TIE and self.ties == "error":
                problems.append(f"{self.where(r, cols.label_0)}: label_0 is a tie (0.5) and ties='error'")
                continue
            flip = outcome == IMAGE_1_WINS
            if p is None:
                p = 0.5 if outcome == TIE else 1.0
            elif self.soft_label_of == "image_0" and flip:
                p = 1.0 - p
            rows.append(r)
            swapped.append(flip)
            soft.append(p)
            tie.append(outcome == TIE)
        raise_problems(f"{source.name}: {len(problems)} bad label(s)", problems)
        self._rows = np.asarray(rows, dtype=np.int64)
        self._swapped = np.asarray(swapped, dtype=bool)
        self._soft = np.asarray(soft, dtype=np.float64)
        self._tie = np.asarray(tie, dtype=bool)
        self.num_ties_dropped = dropped

    # ------------------------------------------------------------------ reading
    @property
    def caption_column(self) -> str:
        return self.columns.caption

    def _text_columns(self) -> list[str]:
        c = self.columns
        extra = [c.caption_0, c.caption_1, c.caption_w, c.caption_l]
        return [c.caption] + [x for x in extra if x is not None]

    def _media_columns(self) -> list[str]:
        return [self.columns.image_0, self.columns.image_1]

    @property
    def num_ties_kept(self) -> int:
        """Examples that are kept ties (``ties="keep"``)."""
        return int(self._tie.sum())

    def is_tie(self, index: int) -> bool:
        return bool(self._tie[self._check(index)])

    def soft_label(self, index: int) -> float:
        return float(self._soft[self._check(index)])

    def _role_columns(self, index: int) -> tuple[str, str]:
        """(winner column, loser column) of example ``index``."""
        c = self.columns
        return (c.image_1, c.image_0) if self._swapped[index] else (c.image_0, c.image_1)

    def _role_captions(self, index: int, row: int, values: dict[str, Any]) -> tuple[str | None, str | None]:
        c = self.columns
        if c.caption_w is not None:
            return self._caption(row, c.caption_w, values[c.caption_w]), self._caption(row, c.caption_l, values[c.caption_l])
        if c.caption_0 is not None:
            c0 = self._caption(row, c.caption_0, values[c.caption_0])
            c1 = self._caption(row, c.caption_1, values[c.caption_1])
            return (c1, c0) if self._swapped[index] else (c0, c1)
        return None, None

    def _load(self, index: int, params: AugmentParams) -> PairExample:
        row = int(self._rows[index])
        win_col, lose_col = self._role_columns(index)
        values = self._read(row, self._text_columns() + [win_col, lose_col])
        caption = self._caption(row, self.columns.caption, values[self.columns.caption])
        caption_w, caption_l = self._role_captions(index, row, values)
        winner = self._pixels(row, win_col, values[win_col], params)
        loser = winner.clone() if lose_col == win_col else self._pixels(row, lose_col, values[lose_col], params)
        return PairExample(
            index=index,
            caption=caption,
            winner=winner,
            loser=loser,
            soft_label=float(self._soft[index]),
            is_tie=bool(self._tie[index]),
            caption_w=caption_w,
            caption_l=caption_l,
        )

    def load_role(self, index: int, role: str, params: AugmentParams) -> tuple[str, torch.Tensor]:
        """Only the winner's (``role="winner"``) or loser's caption and pixels of pair ``index``; the
        caption is the per-role caption when the data has one, else the pair's caption."""
        index = self._check(index)
        if role not in ("winner", "loser"):
            raise ValueError(f"role must be 'winner' or 'loser', got {role!r}")
        row = int(self._rows[index])
        column = self._role_columns(index)[0 if role == "winner" else 1]
        values = self._read(row, self._text_columns() + [column])
        caption_w, caption_l = self._role_captions(index, row, values)
        role_caption = caption_w if role == "winner" else caption_l
        caption = role_caption if role_caption is not None else self._caption(row, self.columns.caption, values[self.columns.caption])
        return caption, self._pixels(row, column, values[column], params)

    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "columns": dataclasses.asdict(self.columns),
            "ties": self.ties,
            "soft_label_of": self.soft_label_of,
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ties_dropped": self.num_ties_dropped, "ties_kept": self.num_ties_kept}
