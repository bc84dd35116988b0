"""Degrade renders the way generated images are degraded: blur, additive noise, colour shift.

Used to test the judge's robustness (and usable as data augmentation)."""
from __future__ import annotations

import numpy as np

from diffalign.shapes.imageops import gaussian_blur
from diffalign.utils.images import to_uint8


def perturb(
    image,
    rng: np.random.Generator | int | None = None,
    blur: float = 1.0,
    noise: float = 0.06,
    color_shift: float = 0.04,
) -> np.ndarray:
    """Gaussian blur (``blur`` = sigma in pixels), then a random per-channel colour offset drawn
    uniformly from +-``color_shift`` and a per-channel gain in 1 +- ``color_shift``, then i.i.d.
    Gaussian noise of std ``noise`` (all in [0, 1] units). Returns uint8 HxWx3."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = gaussian_blur(to_uint8(image).astype(np.float64) / 255.0, blur)
    gain = 1.0 + rng.uniform(-color_shift, color_shift, size=3)
    offset = rng.uniform(-color_shift, color_shift, size=3)
    x = x * gain + offset + rng.normal(0.0, noise, size=x.shape)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
