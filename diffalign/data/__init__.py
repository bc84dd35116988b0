"""Preference data for the offline trainers: read, normalise, preprocess, batch, fingerprint, write.

Typical use::

    from diffalign.data import DataConfig, build_dataset, EpochSampler
    ds = build_dataset(DataConfig(path="pickapic/", kind="pairs", resolution=512), seed=0)
    loader = DataLoader(ds, batch_size=8, sampler=EpochSampler(len(ds), seed=0), collate_fn=ds.collate)
    batch = next(iter(loader))   # PairBatch: captions, winners [8,3,512,512] in [0,1], losers, soft_labels, is_tie

Modules (one job each):
- ``sources``: row access to a saved ``datasets`` folder, parquet file(s) or jsonl (+ media files),
  with format auto-detection (:func:`open_source`, :func:`detect_format`).
- ``media``: decode stored images / videos (bytes, dicts, paths, frame folders, .npy/.npz, gif/mp4).
- ``transforms``: resize / crop / flip -> float tensors in [0, 1], reproducible per (seed, epoch, index).
- ``labels``: parse label values (Pick-a-Pic label_0, soft labels, KTO flags, ranks, segment labels).
- ``columns``: column names per data kind with Pick-a-Pic defaults.
- ``examples``: example and batch dataclasses and their collate functions.
- ``base`` / ``pairs`` / ``unpaired`` / ``ranked`` / ``video_pairs``: the datasets.
- ``config``: :class:`DataConfig` + :func:`build_dataset`.
- ``sampler``: :class:`EpochSampler` (reproducible, resumable order).
- ``fingerprint``: stable cache keys; ``writer``: write pairs the loaders read back.

Every data problem raises :class:`DatasetError` naming the file, row and column; nothing is skipped
silently (dropped ties and filtered video pairs are counted in ``describe()``).
"""
from diffalign.data.base import PreferenceDataset
from diffalign.data.columns import PairColumns, RankedColumns, UnpairedColumns, VideoPairColumns
from diffalign.data.config import KINDS, DataConfig, build_dataset
from diffalign.data.errors import DatasetError
from diffalign.data.examples import (
    PairBatch,
    PairExample,
    RankedBatch,
    RankedExample,
    UnpairedBatch,
    UnpairedExample,
    VideoPairBatch,
    VideoPairExample,
)
from diffalign.data.media import load_image, load_video
from diffalign.data.pairs import PairDataset
from diffalign.data.ranked import RankedDataset
from diffalign.data.sampler import EpochSampler, epoch_order
from diffalign.data.sources import TableSource, detect_format, open_source
from diffalign.data.transforms import AugmentParams, Preprocess, augmentation_rng
from diffalign.data.unpaired import PairsAsUnpaired, UnpairedDataset
from diffalign.data.video_pairs import VideoPairDataset
from diffalign.data.writer import write_pairs_hf, write_pairs_jsonl

__all__ = [
    "AugmentParams",
    "DataConfig",
    "DatasetError",
    "EpochSampler",
    "KINDS",
    "PairBatch",
    "PairColumns",
    "PairDataset",
    "PairExample",
    "PairsAsUnpaired",
    "PreferenceDataset",
    "Preprocess",
    "RankedBatch",
    "RankedColumns",
    "RankedDataset",
    "RankedExample",
    "TableSource",
    "UnpairedBatch",
    "UnpairedColumns",
    "UnpairedDataset",
    "UnpairedExample",
    "VideoPairBatch",
    "VideoPairColumns",
    "VideoPairDataset",
    "VideoPairExample",
    "augmentation_rng",
    "build_dataset",
    "detect_format",
    "epoch_order",
    "load_image",
    "load_video",
    "open_source",
    "write_pairs_hf",
    "write_pairs_jsonl",
]
