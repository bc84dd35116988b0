"""Column names of each kind of preference data, with Pick-a-Pic-style defaults.

Every field is the name of a column in the stored table; ``None`` means "not present". Build one
from a config mapping with :func:`columns_from_mapping`, which rejects unknown keys.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, TypeVar

from diffalign.data.errors import DatasetError

__all__ = ["PairColumns", "UnpairedColumns", "RankedColumns", "VideoPairColumns", "columns_from_mapping", "used_columns"]


@dataclass(frozen=True)
class PairColumns:
    """Pairs (Pick-a-Pic v2 layout by default).

    ``image_0`` / ``image_1``: the two samples (images, or videos with ``media="video"``); the same
    column twice gives same-image pairs (TDPO: one image, a matched and a mismatched caption).
    ``label_0``: 1 image 0 preferred, 0 image 1 preferred, 0.5 tie; ``None``: image 0 is always the
    winner (winner-first data such as HPDv3 or VideoDPO's pair lists).
    ``soft_label``: optional probability column (SmPO); see ``PairDataset`` for which image it is about.
    Second captions (DCPO/TDPO), either per image — ``caption_0`` / ``caption_1``, reordered with the
    images — or already per role — ``caption_w`` / ``caption_l``. Set one pair or neither.
    """

    caption: str = "caption"
    image_0: str = "jpg_0"
    image_1: str = "jpg_1"
    label_0: str | None = "label_0"
    soft_label: str | None = None
    caption_0: str | None = None
    caption_1: str | None = None
    caption_w: str | None = None
    caption_l: str | None = None

    def __post_init__(self):
        per_image = (self.caption_0, self.caption_1)
        per_role = (self.caption_w, self.caption_l)
        for pair, names in ((per_image, "caption_0/caption_1"), (per_role, "caption_w/caption_l")):
            if (pair[0] is None) != (pair[1] is None):
                raise DatasetError(f"columns {names} must be set together, got {pair[0]!r} and {pair[1]!r}")
        if per_image[0] is not None and per_role[0] is not None:
            raise DatasetError("set either caption_0/caption_1 (per image) or caption_w/caption_l (per role), not both")

    @property
    def has_dual_captions(self) -> bool:
        return self.caption_0 is not None or self.caption_w is not None


@dataclass(frozen=True)
class UnpairedColumns:
    """Unpaired examples for KTO: ``desirable`` holds true/false (or 1/0, "desirable"/"undesirable")."""

    caption: str = "caption"
    image: str = "image"
    desirable: str = "desirable"


@dataclass(frozen=True)
class RankedColumns:
    """Ranked lists for RankDPO: ``images`` holds a list of K images per row; ``scores`` a list of K
    preference scores (higher = better), or, if ``ranks`` is set, it is used instead of ``scores``:
    a list of K ranks (1 = best), converted to win-fraction scores (see ``labels.ranks_to_scores``)."""

    caption: str = "caption"
    images: str = "images"
    scores: str | None = "scores"
    ranks: str | None = None

    def __post_init__(self):
        if self.scores is None and self.ranks is None:
            raise DatasetError("ranked lists need a scores or a ranks column; both are None")


@dataclass(frozen=True)
class VideoPairColumns:
    """Video pairs with DenseDPO segment labels: ``segment_labels`` holds a list of S values per row,
    +1 video 0 wins that temporal segment, -1 video 1 wins, 0 tie."""

    caption: str = "caption"
    video_0: str = "video_0"
    video_1: str = "video_1"
    segment_labels: str = "segment_labels"


C = TypeVar("C")


def columns_from_mapping(cls: type[C], overrides: Mapping[str, str | None] | None) -> C:
    """``cls`` defaults with ``overrides`` applied; an unknown key raises :class:`DatasetError`
    listing the valid ones. Empty strings count as ``None`` (unset)."""
    overrides = dict(overrides or {})
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise DatasetError(f"unknown column key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                           f"for {cls.__name__}; valid keys: {', '.join(valid)}")
    return cls(**{k: (v if v != "" else None) for k, v in overrides.items()})


def used_columns(columns) -> dict[str, str]:
    """Role -> column name for every column that is set (for ``TableSource.require_columns``)."""
    return {f.name: getattr(columns, f.name) for f in dataclasses.fields(columns) if getattr(columns, f.name) is not None}
