"""Reproducible, resumable example order.

:func:`epoch_order` is the order of one epoch, fixed by ``(seed, epoch)``. :class:`EpochSampler`
yields it for a ``DataLoader`` and can start part-way through an epoch, so a resumed run sees
exactly the examples an uninterrupted run would have seen next.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

__all__ = ["epoch_order", "EpochSampler"]


def epoch_order(length: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Example indices of one epoch: a permutation drawn from ``(seed, epoch)``, or ``0..length-1``."""
    if not shuffle:
        return np.arange(length, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), 0x0D5]))
    return rng.permutation(length).astype(np.int64)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Yields :func:`epoch_order` of the current epoch from position ``start``.

    Resume: ``EpochSampler(len(ds), seed, epoch=e, start=k)`` continues epoch ``e`` after its first
    ``k`` examples (``k`` = micro-batches consumed x batch size). ``set_epoch(e)`` moves to the
    start of epoch ``e``. Pair it with ``dataset.set_epoch(e)`` so augmentation follows the epoch too.
    """

    def __init__(self, length: int, seed: int = 0, shuffle: bool = True, epoch: int = 0, start: int = 0):
        if length < 0 or not 0 <= start <= length:
            raise ValueError(f"need 0 <= start <= length, got start={start}, length={length}")
        self.length, self.seed, self.shuffle = int(length), int(seed), bool(shuffle)
        self.epoch, self.start = int(epoch), int(start)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.length:
            raise ValueError(f"need 0 <= start <= length, got start={start}, length={self.length}")
        self.epoch, self.start = int(epoch), int(start)

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(self.length, self.seed, self.epoch, self.shuffle)
        return iter(order[self.start :].tolist())

    def __len__(self) -> int:
        return self.length - self.start
