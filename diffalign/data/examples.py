"""What the datasets return: one example dataclass per kind of data, and the batch each collates to.

Pixels are float32 in [0, 1]: images ``[3, H, W]``, videos ``[F, 3, H, W]``; batches stack them on a
new leading axis. ``index`` is the example's position in its dataset (stable for the same data and
options, so usable as a cache key together with ``PreferenceDataset.fingerprint``).

- :class:`PairExample` / :class:`PairBatch`: winner and loser already ordered (no ``label_0``
  logic left for the trainer), a soft label, a tie flag and optional per-role captions.
- :class:`UnpairedExample` / :class:`UnpairedBatch`: one image and whether it is desirable (KTO).
- :class:`RankedExample` / :class:`RankedBatch`: K images and their scores, higher = better (RankDPO).
- :class:`VideoPairExample` / :class:`VideoPairBatch`: two videos and per-segment labels (DenseDPO).

Use a dataset's ``collate`` as the ``DataLoader``'s ``collate_fn``; batches move with ``.to(device)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "PairExample",
    "PairBatch",
    "UnpairedExample",
    "UnpairedBatch",
    "RankedExample",
    "RankedBatch",
    "VideoPairExample",
    "VideoPairBatch",
    "collate_pairs",
    "collate_unpaired",
    "collate_ranked",
    "collate_video_pairs",
]


class _Movable:
    def to(self, device=None, dtype: torch.dtype | None = None):
        """A copy with every tensor on ``device``; floating tensors also cast to ``dtype`` if given."""

        def move(value):
            if not isinstance(value, Tensor):
                return value
            if dtype is not None and value.is_floating_point():
                return value.to(device=device, dtype=dtype)
            return value.to(device=device)

        return dataclasses.replace(self, **{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return len(self.captions)  # type: ignore[attr-defined]


@dataclass
class PairExample:
    """A preference pair. ``soft_label``: probability that the winner is preferred (1.0 for hard labels,
    0.5 for a kept tie). ``is_tie``: the stored label was a tie (``winner`` is then image 0).
    ``caption_w`` / ``caption_l``: per-role captions when the data has them (DCPO/TDPO), else None."""

    index: int
    caption: str
    winner: Tensor
    loser: Tensor
    soft_label: float = 1.0
    is_tie: bool = False
    caption_w: str | None = None
    caption_l: str | None = None


@dataclass
class PairBatch(_Movable):
    """``winners``/``losers`` [B, 3, H, W] (or [B, F, 3, H, W]); ``soft_labels`` [B] float32;
    ``is_tie`` [B] bool; ``indices`` [B] int64; per-role caption lists or None."""

    indices: Tensor
    captions: list[str]
    winners: Tensor
    losers: Tensor
    soft_labels: Tensor
    is_tie: Tensor
    captions_w: list[str] | None = None
    captions_l: list[str] | None = None


@dataclass
class UnpairedExample:
    """One image with a KTO label: ``desirable`` True (y = +1) or False (y = -1)."""

    index: int
    caption: str
    image: Tensor
    desirable: bool


@dataclass
class UnpairedBatch(_Movable):
    """``images`` [B, 3, H, W] (or [B, F, 3, H, W]); ``desirable`` [B] bool; ``indices`` [B] int64."""

    indices: Tensor
    captions: list[str]
    images: Tensor
    desirable: Tensor


@dataclass
class RankedExample:
    """A ranked list of K images of one prompt: ``images`` [K, 3, H, W], ``scores`` [K] float32 with
    higher = better (RankDPO's phi)."""

    index: int
    caption: str
    images: Tensor
    scores: Tensor


@dataclass
class RankedBatch(_Movable):
    """``images`` [B, K, 3, H, W]; ``scores`` [B, K] float32; ``indices`` [B] int64."""

    indices: Tensor
    captions: list[str]
    images: Tensor
    scores: Tensor


@dataclass
class VideoPairExample:
    """Two videos ``[F, 3, H, W]`` and ``segment_labels`` [S] int64: +1 video 0 wins the segment,
    -1 video 1 wins, 0 tie (the layout ``dense_dpo_loss`` takes)."""

    index: int
    caption: str
    video_0: Tensor
    video_1: Tensor
    segment_labels: Tensor


@dataclass
class VideoPairBatch(_Movable):
    """``videos_0``/``videos_1`` [B, F, 3, H, W]; ``segment_labels`` [B, S] int64; ``indices`` [B]."""

    indices: Tensor
    captions: list[str]
    videos_0: Tensor
    videos_1: Tensor
    segment_labels: Tensor


def _stack(examples: Sequence, field: str) -> Tensor:
    tensors = [getattr(e, field) for e in examples]
    first = tensors[0].shape
    for e, t in zip(examples, tensors):
        if t.shape != first:
            raise ValueError(
                f"cannot batch examples {examples[0].index} and {e.index}: {field} shapes {tuple(first)} and "
                f"{tuple(t.shape)} differ (set a fixed resolution / num_frames, or use batch size 1)"
            )
    return torch.stack(tensors)


def _indices(examples: Sequence) -> Tensor:
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    return torch.tensor([e.index for e in examples], dtype=torch.long)


def collate_pairs(examples: Sequence[PairExample]) -> PairBatch:
    """Stack pair examples into a :class:`PairBatch`."""
    indices = _indices(examples)
    dual = examples[0].caption_w is not None
    return PairBatch(
        indices=indices,
        captions=[e.caption for e in examples],
        winners=_stack(examples, "winner"),
        losers=_stack(examples, "loser"),
        soft_labels=torch.tensor([e.soft_label for e in examples], dtype=torch.float32),
        is_tie=torch.tensor([e.is_tie for e in examples], dtype=torch.bool),
        captions_w=[e.caption_w for e in examples] if dual else None,
        captions_l=[e.caption_l for e in examples] if dual else None,
    )


def collate_unpaired(examples: Sequence[UnpairedExample]) -> UnpairedBatch:
    """Stack unpaired examples into an :class:`UnpairedBatch`."""
    return UnpairedBatch(
        indices=_indices(examples),
        captions=[e.caption for e in examples],
        images=_stack(examples, "image"),
        desirable=torch.tensor([e.desirable for e in examples], dtype=torch.bool),
    )


def collate_ranked(examples: Sequence[RankedExample]) -> RankedBatch:
    """Stack ranked lists (all of the same length K) into a :class:`RankedBatch`."""
    return RankedBatch(
        indices=_indices(examples),
        captions=[e.caption for e in examples],
        images=_stack(examples, "images"),
        scores=_stack(examples, "scores"),
    )


def collate_video_pairs(examples: Sequence[VideoPairExample]) -> VideoPairBatch:
    """Stack video pairs (same frame and segment counts) into a :class:`VideoPairBatch`."""
    return VideoPairBatch(
        indices=_indices(examples),
        captions=[e.caption for e in examples],
        videos_0=_stack(examples, "video_0"),
        videos_1=_stack(examples, "video_1"),
        segment_labels=_stack(examples, "segment_labels"),
    )
