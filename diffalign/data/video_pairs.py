"""Video pairs with DenseDPO segment labels: (caption, video_0, video_1, segment_labels [S]).

Videos are decoded by :func:`~diffalign.data.media.load_video` (gif, mp4 through
``imageio-ffmpeg``, frame folders, ``.npy``/``.npz``) and preprocessed frame by frame with one crop
and flip for all frames of both videos -> float tensors [F, 3, H, W] in [0, 1]. Segment labels are
read and checked when the dataset is built (+1 video 0 wins the segment, -1 video 1 wins, 0 tie);
``min_nontie_fraction`` keeps only pairs with at least that fraction of non-tie segments (DenseDPO
samples clips with > 20% non-tie segments); ``num_filtered`` counts the pairs it removed.

For whole-video preference pairs with a single label use
:class:`~diffalign.data.pairs.PairDataset` with ``media="video"`` instead.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from diffalign.data.base import PreferenceDataset
from diffalign.data.columns import VideoPairColumns, used_columns
from diffalign.data.errors import DatasetError, raise_problems
from diffalign.data.examples import VideoPairExample, collate_video_pairs
from diffalign.data.labels import segment_labels
from diffalign.data.sources import TableSource
from diffalign.data.transforms import AugmentParams, Preprocess

__all__ = ["VideoPairDataset"]


class VideoPairDataset(PreferenceDataset):
    """A table of video pairs with per-segment labels -> :class:`VideoPairExample`."""

    kind = "video_pairs"
    collate = staticmethod(collate_video_pairs)

    def __init__(
        self,
        source: TableSource,
        columns: VideoPairColumns = VideoPairColumns(),
        preprocess: Preprocess = Preprocess(),
        min_nontie_fraction: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(source, preprocess, media="video", seed=seed)
        if not 0.0 <= float(min_nontie_fraction) <= 1.0:
            raise DatasetError(f"min_nontie_fraction must be in [0, 1], got {min_nontie_fraction!r}")
        source.require_columns(used_columns(columns))
        self.columns = columns
        self.min_nontie_fraction = float(min_nontie_fraction)
        problems: list[str] = []
        rows, labels = [], []
        for r, value in enumerate(source.read_column(columns.segment_labels)):
            parsed = self._collect(problems, self.where(r, columns.segment_labels), lambda v=value: segment_labels(v))
            if parsed is None:
                continue
            if sum(1 for x in parsed if x != 0) < self.min_nontie_fraction * len(parsed):
                continue
            rows.append(r)
            labels.append(parsed)
        raise_problems(f"{source.name}: {len(problems)} bad segment label list(s)", problems)
        self._rows = np.asarray(rows, dtype=np.int64)
        self._labels = labels
        self.num_filtered = len(source) - len(rows)

    @property
    def caption_column(self) -> str:
        return self.columns.caption

    def _media_columns(self) -> list[str]:
        return [self.columns.video_0, self.columns.video_1]

    def segment_labels(self, index: int) -> list[int]:
        return list(self._labels[self._check(index)])

    def _load(self, index: int, params: AugmentParams) -> VideoPairExample:
        row = int(self._rows[index])
        c = self.columns
        values = self._read(row, [c.caption, c.video_0, c.video_1])
        video_0 = self._pixels(row, c.video_0, values[c.video_0], params)
        video_1 = self._pixels(row, c.video_1, values[c.video_1], params)
        if video_0.shape != video_1.shape:
            raise DatasetError(f"{self.where(row)}: {c.video_0} has shape {tuple(video_0.shape)} but {c.video_1} has "
                               f"{tuple(video_1.shape)}; both videos of a pair need the same frame count (see num_frames)")
        return VideoPairExample(
            index=index,
            caption=self._caption(row, c.caption, values[c.caption]),
            video_0=video_0,
            video_1=video_1,
            segment_labels=torch.tensor(self._labels[index], dtype=torch.long),
        )

    def options(self) -> dict[str, Any]:
        return {**super().options(), "columns": dataclasses.asdict(self.columns),
                "min_nontie_fraction": self.min_nontie_fraction}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "filtered": self.num_filtered}
