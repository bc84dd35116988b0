"""Small pure-numpy image operations used by the shapes detector (no scipy dependency):
separable blurs, binary erosion/dilation, connected components and sRGB -> CIELAB."""
from __future__ import annotations

import numpy as np

BINOMIAL_KERNEL = np.array([0.25, 0.5, 0.25])


def separable_filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve the two leading axes of ``image`` with a symmetric 1-D ``kernel`` (edge padding)."""
    r = len(kernel) // 2
    out = np.asarray(image, dtype=np.float64)
    h, w = out.shape[:2]
    rest = [(0, 0)] * (out.ndim - 2)
    padded = np.pad(out, [(r, r), (0, 0)] + rest, mode="edge")
    out = sum(wt * padded[i:i + h] for i, wt in enumerate(kernel))
    padded = np.pad(out, [(0, 0), (r, r)] + rest, mode="edge")
    return sum(wt * padded[:, i:i + w] for i, wt in enumerate(kernel))


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian kernel of standard deviation ``sigma`` (radius ceil(3 sigma))."""
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def binomial_smooth(image: np.ndarray) -> np.ndarray:
    """3x3 binomial smoothing [1 2 1]/4 x [1 2 1]/4 (cuts white-noise std to 0.375x)."""
    return separable_filter(image, BINOMIAL_KERNEL)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the two leading axes with standard deviation ``sigma`` pixels."""
    if sigma <= 0:
        return np.asarray(image, dtype=np.float64)
    return separable_filter(image, gaussian_kernel(sigma))


def _shifted(mask: np.ndarray, fill: bool) -> list[np.ndarray]:
    p = np.pad(mask, 1, constant_values=fill)
    return [p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]


def erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (outside the image counts as set, so border objects keep a core)."""
    out = mask.copy()
    for s in _shifted(mask, True):
        out &= s
    return out


def dilate(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary dilation."""
    out = mask.copy()
    for s in _shifted(mask, False):
        out |= s
    return out


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (labels int array with 0 = background and
    components numbered 1..n in raster order of their first pixel, n)."""
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        p = np.pad(lab, 1, constant_values=big)
        nb = np.minimum.reduce([lab, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        nb = np.where(mask, nb, big)
        # pointer jumping: follow each pixel's label to that pixel's label
        flat = np.append(nb.ravel(), big)
        jumped = np.where(mask, flat[np.minimum(nb, big) - 1], big)
        new = np.minimum(nb, jumped)
        if np.array_equal(new, lab):
            break
        lab = new
    roots = np.unique(lab[mask])
    out = np.zeros((h, w), dtype=np.int32)
    out[mask] = np.searchsorted(roots, lab[mask]) + 1
    return out, len(roots)


SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb) -> np.ndarray:
    """sRGB in [0, 1] (any leading shape, last axis 3) -> CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ SRGB_TO_XYZ.T / WHITE_D65
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)
