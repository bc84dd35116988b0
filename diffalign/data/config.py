"""The data section of a training config, and the one call that turns it into a dataset.

``build_dataset(DataConfig(path="pick/", kind="pairs", resolution=512), seed=0)`` opens the source
(format auto-detected), applies the column names and options of the kind, and returns the matching
:class:`~diffalign.data.base.PreferenceDataset`. ``DataConfig`` is an OmegaConf-friendly dataclass,
so a recipe sets ``data.path=...``, ``data.columns.label_0=my_label`` and so on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from diffalign.config import apply_parsers, choice, parsed
from diffalign.data.base import MEDIA, PreferenceDataset
from diffalign.data.columns import PairColumns, RankedColumns, UnpairedColumns, VideoPairColumns, columns_from_mapping
from diffalign.data.errors import DatasetError
from diffalign.data.pairs import SOFT_LABEL_OF, TIE_POLICIES, PairDataset
from diffalign.data.ranked import RankedDataset
from diffalign.data.sources import FORMATS, MemorySource, open_source
from diffalign.data.transforms import Preprocess, resolution_value
from diffalign.data.unpaired import PairsAsUnpaired, UnpairedDataset
from diffalign.data.video_pairs import VideoPairDataset

__all__ = ["KINDS", "DataConfig", "build_dataset"]

#: data kinds and the column set each uses.
KINDS = {
    "pairs": PairColumns,
    "unpaired": UnpairedColumns,
    "ranked": RankedColumns,
    "video_pairs": VideoPairColumns,
}


@dataclass
class DataConfig:
    """Where the preference data is and how to read it.

    - ``path``: a saved ``datasets`` folder, a parquet file / folder / glob, or a jsonl file (or a
      folder holding one); ``format``: ``auto`` | ``hf`` | ``parquet`` | ``jsonl``; ``split``: the
      split of a saved ``DatasetDict``.
    - ``kind``: ``pairs`` (Pick-a-Pic), ``unpaired`` (KTO), ``ranked`` (RankDPO), ``video_pairs``
      (DenseDPO segment labels). ``unpaired_from_pairs``: build KTO examples from a pair set
      (winner desirable, loser undesirable; ties dropped).
    - ``columns``: overrides of the kind's default column names (see ``diffalign.data.columns``);
      an empty string or null unsets an optional column.
    - ``media``: ``image`` or ``video`` (what the image columns of pairs/unpaired/ranked hold).
    - ``ties`` (pairs): ``drop`` | ``keep`` | ``error``; ``soft_label_of`` (pairs with a soft-label
      column): ``winner`` | ``image_0``; ``min_nontie_fraction`` (video_pairs).
    - preprocessing: ``resolution`` (a square side, or ``[height, width]`` / ``"480x720"``),
      ``random_crop``, ``random_flip``, ``num_frames`` (videos: keep the first N frames).
    """

    path: str = ""
    format: str = choice("auto", ("auto", *FORMATS))
    split: str = "train"
    kind: str = choice("pairs", tuple(KINDS))
    columns: dict[str, Optional[str]] = field(default_factory=dict)
    media: str = choice("image", MEDIA)
    ties: str = choice("drop", TIE_POLICIES)
    soft_label_of: str = choice("winner", SOFT_LABEL_OF)
    unpaired_from_pairs: bool = False
    min_nontie_fraction: float = 0.0
    resolution: Any = parsed(512, resolution_value)
    random_crop: bool = False
    random_flip: bool = False
    num_frames: Optional[int] = None

    def __post_init__(self) -> None:
        apply_parsers(self)

    @property
    def size(self) -> tuple[int, int]:
        """The training ``(height, width)`` in pixels."""
        r = self.resolution
        return (r, r) if isinstance(r, int) else (r[0], r[1])

    def preprocess(self) -> Preprocess:
        return Preprocess(self.resolution, self.random_crop, self.random_flip, self.num_frames)


def build_dataset(cfg: DataConfig, seed: int = 0, rows: Any = None) -> PreferenceDataset:
    """The dataset ``cfg`` describes; ``seed`` drives its (reproducible) augmentation.

    ``rows`` (instead of ``cfg.path``): in-memory rows with the kind's columns, a ``datasets.Dataset``,
    a torch map-style dataset of dicts or a list of dicts (:class:`~diffalign.data.sources.MemorySource`);
    a :class:`PreferenceDataset` is returned as it is."""
    if isinstance(rows, PreferenceDataset):
        return rows
    if rows is None and not cfg.path:
        raise DatasetError("data.path is not set (or pass the rows themselves: dataset=...)")
    if cfg.kind not in KINDS:
        raise DatasetError(f"unknown data kind {cfg.kind!r}; choose one of: {', '.join(KINDS)}")
    try:
        preprocess = cfg.preprocess()
    except ValueError as e:
        raise DatasetError(f"data: {e}") from e
    column_kind = "pairs" if cfg.kind == "unpaired" and cfg.unpaired_from_pairs else cfg.kind
    columns = columns_from_mapping(KINDS[column_kind], cfg.columns)
    source = MemorySource(rows) if rows is not None else open_source(cfg.path, format=cfg.format, split=cfg.split)
    if len(source) == 0:
        raise DatasetError(f"{source.name}: the data set is empty (no rows)")
    if column_kind == "pairs":
        pairs = PairDataset(source, columns, preprocess, ties=cfg.ties, soft_label_of=cfg.soft_label_of,
                            media=cfg.media, seed=seed)
        return PairsAsUnpaired(pairs) if cfg.kind == "unpaired" else pairs
    if cfg.kind == "unpaired":
        return UnpairedDataset(source, columns, preprocess, media=cfg.media, seed=seed)
    if cfg.kind == "ranked":
        return RankedDataset(source, columns, preprocess, media=cfg.media, seed=seed)
    return VideoPairDataset(source, columns, preprocess, min_nontie_fraction=cfg.min_nontie_fraction, seed=seed)
