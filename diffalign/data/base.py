"""Shared machinery of the preference datasets: indexing, reproducible augmentation, media decoding
with located errors, validation and fingerprints.

A :class:`PreferenceDataset` is a map-style ``torch.utils.data.Dataset`` over a
:class:`~diffalign.data.sources.TableSource`. Subclasses decide which source rows become examples
(e.g. dropping ties) when they are built, and how one example is read (``_load``).

Reproducibility: example ``i`` read in epoch ``e`` is augmented with a generator derived from
``(seed, e, i)`` (:func:`~diffalign.data.transforms.augmentation_rng`), so the same example always
gets the same crop/flip in that epoch, whichever worker loads it and whether or not the run was
resumed. ``dataset[i]`` uses ``dataset.epoch``: call :meth:`set_epoch` before creating each epoch's
``DataLoader`` iterator (workers copy the dataset when the iterator is created, so do not use
``persistent_workers=True`` with random augmentation), or call ``dataset.get(i, epoch=e)``.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from diffalign.data.errors import DatasetError, raise_problems
from diffalign.data.fingerprint import fingerprint as _fingerprint
from diffalign.data.labels import as_caption
from diffalign.data.media import MediaError, load_image, load_video, media_paths
from diffalign.data.sources import TableSource
from diffalign.data.transforms import AugmentParams, Preprocess, augmentation_rng

__all__ = ["MEDIA", "PreferenceDataset"]

#: what a media column holds.
MEDIA = ("image", "video")


class PreferenceDataset(torch.utils.data.Dataset, ABC):
    """Base of every preference dataset. Public API:

    ``len(ds)``, ``ds[i]`` / ``ds.get(i, epoch=None)`` -> one example dataclass; ``ds.collate`` (the
    ``DataLoader`` ``collate_fn``); ``set_epoch(e)``; ``source_row(i)``; ``caption(i)``;
    ``prompts()`` (every distinct text the examples are conditioned on, for embedding caches);
    ``validate()``; ``fingerprint()``; ``describe()`` (a dict summary for logs).
    """

    #: data kind name used in configs ("pairs", "unpaired", "ranked", "video_pairs").
    kind: ClassVar[str]
    #: ``collate_fn`` for a DataLoader over this dataset.
    collate: ClassVar[Callable[[Sequence[Any]], Any]]

    def __init__(self, source: TableSource, preprocess: Preprocess, media: str = "image", seed: int = 0):
        if media not in MEDIA:
            raise DatasetError(f"media must be one of {', '.join(MEDIA)}, got {media!r}")
        self.source = source
        self.preprocess = preprocess
        self.media = media
        self.seed = int(seed)
        self.epoch = 0
        self._rows = np.arange(0, dtype=np.int64)  # source row of each example; set by subclasses

    # ------------------------------------------------------------------ indexing
    def __len__(self) -> int:
        return int(self._rows.shape[0])

    def __getitem__(self, index: int):
        return self.get(index)

    def _check(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} out of range for a dataset of {len(self)} examples")
        return index

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation ``ds[i]`` reproduces."""
        self.epoch = int(epoch)

    def augment_params(self, index: int, epoch: int | None = None) -> AugmentParams:
        """The crop/flip of example ``index`` in ``epoch`` (default: the current epoch)."""
        e = self.epoch if epoch is None else int(epoch)
        rng = augmentation_rng(self.seed, e, index) if self.preprocess.is_random else None
        return self.preprocess.sample_params(rng)

    def get(self, index: int, epoch: int | None = None):
        """Example ``index``, augmented as in ``epoch`` (default: the current epoch)."""
        index = self._check(index)
        return self._load(index, self.augment_params(index, epoch))

    @abstractmethod
    def _load(self, index: int, params: AugmentParams):
        """Read, decode and preprocess example ``index``."""

    def source_row(self, index: int) -> int:
        """The row of the source table example ``index`` comes from."""
        return int(self._rows[self._check(index)])

    # ------------------------------------------------------------------ reading helpers
    def where(self, row: int, column: str | None = None) -> str:
        """``"pickapic.parquet row 17 column jpg_1"``."""
        text = self.source.where(row)
        return f"{text} column {column}" if column else text

    def _read(self, row: int, columns: Sequence[str]) -> dict[str, Any]:
        unique = list(dict.fromkeys(columns))
        try:
            return self.source.read_row(row, unique)
        except DatasetError:
            raise
        except Exception as e:  # noqa: BLE001 - storage back-ends raise many types
            raise DatasetError(f"{self.where(row)}: cannot read row ({type(e).__name__}: {e})") from e

    def _caption(self, row: int, column: str, value: Any) -> str:
        try:
            return as_caption(value, column)
        except ValueError as e:
            raise DatasetError(f"{self.where(row, column)}: {e}") from e

    def _pixels(self, row: int, column: str, value: Any, params: AugmentParams, item: int | None = None) -> torch.Tensor:
        """Decode one stored image/video and preprocess it -> float tensor in [0, 1]."""
        loc = self.where(row, column) + (f" item {item}" if item is not None else "")
        try:
            root = self.source.media_root(row)
            array = load_video(value, root) if self.media == "video" else load_image(value, root)
            return self.preprocess(array, params)
        except (MediaError, ValueError) as e:
            raise DatasetError(f"{loc}: {e}") from e

    @staticmethod
    def _collect(problems: list[str], where: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; on ``ValueError`` record ``"where: reason"`` and return None."""
        try:
            return fn()
        except ValueError as e:
            problems.append(f"{where}: {e}")
            return None

    # ------------------------------------------------------------------ text
    @property
    @abstractmethod
    def caption_column(self) -> str:
        """Name of the main caption column."""

    def caption(self, index: int) -> str:
        """The main caption of example ``index`` (reads no media)."""
        row = self.source_row(index)
        return self._caption(row, self.caption_column, self._read(row, [self.caption_column])[self.caption_column])

    def _text_columns(self) -> list[str]:
        return [self.caption_column]

    def prompts(self) -> list[str]:
        """Every distinct text the examples are conditioned on (captions, and per-role captions when
        the data has them), sorted — what a text-embedding cache must hold. Reads no media."""
        used = set(self._rows.tolist())
        texts: set[str] = set()
        for column in self._text_columns():
            for row, value in enumerate(self.source.read_column(column)):
                if row in used:
                    texts.add(self._caption(row, column, value))
        return sorted(texts)

    # ------------------------------------------------------------------ checks and keys
    def validate(self, raise_on_error: bool = True, progress: bool = False) -> list[str]:
        """Load every example once (decoding every image/video) and collect every failure.

        Returns the list of problems (one message per bad example, naming file, row and column);
        with ``raise_on_error`` a non-empty list raises one :class:`DatasetError` listing them (its
        ``problems`` attribute holds them all). Labels were already checked when the dataset was built.
        """
        indices: Any = range(len(self))
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices, desc=f"validating {self.source.name}")
        problems = []
        for i in indices:
            try:
                self._load(i, AugmentParams())
            except DatasetError as e:
                problems.append(str(e))
        if raise_on_error:
            raise_problems(f"{self.source.name}: {len(problems)} of {len(self)} examples failed validation", problems)
        return problems

    def _media_columns(self) -> list[str]:
        """Columns that hold media (their file paths enter the fingerprint)."""
        return []

    def options(self) -> dict[str, Any]:
        """Everything besides the files that decides what the examples contain (JSON-friendly)."""
        return {
            "kind": self.kind,
            "format": self.source.format,
            "split": getattr(self.source, "split", None),
            "media": self.media,
            "preprocess": dataclasses.asdict(self.preprocess),
        }

    def fingerprint(self, content: bool = False) -> str:
        """Stable key of this dataset's outputs: the files of the table, every media file its rows
        point to (paths in text columns), and :meth:`options` (kind, columns, tie policy, resolution,
        crop/flip, ...). Sizes and mtimes by default; file contents with ``content=True``. The seed is
        not included: with random augmentation outputs vary per epoch and must not be cached."""
        files = list(self.source.files())
        for column in dict.fromkeys(self._media_columns()):
            if self.source.column_holds_text(column):
                for row, value in enumerate(self.source.read_column(column)):
                    files.extend(media_paths(value, self.source.media_root(row)))
        options = self.options()
        digest = self.source.digest()
        if digest is not None:  # in-memory rows: their contents stand for the files
            options["rows"] = digest
        return _fingerprint(options, files, content=content)

    def describe(self) -> dict[str, Any]:
        """A short summary for logs: source, sizes and options."""
        return {"source": self.source.name, "source_rows": len(self.source), "examples": len(self), **self.options()}
