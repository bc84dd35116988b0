"""Turn whatever a caller hands a reward into one float tensor in [0, 1].

Accepted forms (``modality`` decides how many leading axes there are):

- torch tensors, channel-first: images ``[B,3,H,W]``, videos / multi-view ``[B,N,3,H,W]``; float in
  [0, 1] or uint8 in [0, 255];
- numpy arrays, channel-last as images come from PIL / imageio: ``[B,H,W,3]`` or ``[B,N,H,W,3]``,
  uint8 or float in [0, 1];
- lists: of PIL images / ``[H,W,3]`` arrays / ``[3,H,W]`` tensors for images, of such lists (or of
  ``[N,...]`` arrays) for videos and multi-view samples.

Float tensors pass through unchanged (same device, same autograd graph), so gradients reach them.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

MODALITIES = ("image", "video", "multiview")
"""``image``: [B,3,H,W]; ``video``: [B,T,3,H,W] (T frames); ``multiview``: [B,V,3,H,W] (V views)."""

_RANGE_SLACK = 0.5


def _ndim_for(modality: str) -> int:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    return 4 if modality == "image" else 5


def _one_image(item: Any, where: str) -> torch.Tensor:
    """One image (PIL, [H,W,3] array, [3,H,W] tensor) -> float [3,H,W] in [0, 1]."""
    if hasattr(item, "convert") and hasattr(item, "size"):  # PIL
        item = np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[-1] != 3:
            raise ValueError(f"{where}: expected an [H,W,3] array, got shape {item.shape}")
        item = torch.from_numpy(np.array(item)).permute(2, 0, 1)
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"{where}: expected a PIL image, array or tensor, got {type(item).__name__}")
    if item.ndim != 3 or item.shape[0] != 3:
        raise ValueError(f"{where}: expected a [3,H,W] tensor, got shape {tuple(item.shape)}")
    return _to_float(item)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise TypeError(f"expected uint8 or floating point pixels, got {x.dtype}")
    return x


def _stack(items: list, ndim: int, where: str) -> torch.Tensor:
    if ndim == 4:
        images = [_one_image(item, f"{where}[{i}]") for i, item in enumerate(items)]
    else:
        images = [as_samples(item, "image", f"{where}[{i}]") for i, item in enumerate(items)]
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise ValueError(f"{where}: all items must have the same shape, got {sorted(shapes)}")
    return torch.stack(images)


def as_samples(samples: Any, modality: str = "image", where: str = "samples") -> torch.Tensor:
    """``samples`` in any accepted form -> float tensor [B,3,H,W] (image) or [B,N,3,H,W].

    Raises ``ValueError`` naming the offending item for wrong shapes, and for float pixels far outside
    [0, 1] (the usual mistake: passing a decoder's [-1, 1] output).
    """
    ndim = _ndim_for(modality)
    if isinstance(samples, np.ndarray):
        if samples.ndim != ndim or samples.shape[-1] != 3:
            raise ValueError(f"{where}: expected a channel-last array with {ndim} axes ending in 3, got {samples.shape}")
        samples = torch.from_numpy(np.array(samples)).movedim(-1, -3)
    elif isinstance(samples, (list, tuple)):
        if not samples:
            raise ValueError(f"{where}: empty batch")
        samples = _stack(list(samples), ndim, where)
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"{where}: unsupported type {type(samples).__name__}")
    if samples.ndim != ndim or samples.shape[-3] != 3:
        layout = "[B,3,H,W]" if ndim == 4 else "[B,N,3,H,W]"
        raise ValueError(f"{where}: a {modality} batch must be a channel-first {layout} tensor, got {tuple(samples.shape)}")
    samples = _to_float(samples)
    if samples.numel():
        lo, hi = torch.aminmax(samples.detach())
        if lo.item() < -_RANGE_SLACK or hi.item() > 1 + _RANGE_SLACK:
            raise ValueError(
                f"{where}: pixel values span [{lo.item():.3g}, {hi.item():.3g}]; rewards expect RGB in [0, 1] "
                "(map a decoder's [-1, 1] output with (x + 1) / 2)"
            )
    return samples
