"""The shapes detector: from pixels alone to :class:`Detection` records.

Steps: estimate the background as the image's median colour; smooth (3x3 binomial) and mark
pixels whose colour is far from it; split the mark into 4-connected components and drop specks;
name each component's colour from the median of its interior (nearest GenEval colour in CIELAB);
turn the component into a soft coverage map (projection of each pixel onto the object-background
colour axis); fit every shape's template to that map (size from the soft area, centre from the
centroid, optionally blurred) and keep the best; the fit quality, rescaled to [0, 1], is the
detection score.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffalign.geneval.detectors import Detector
from diffalign.shapes.imageops import (
    BINOMIAL_KERNEL,
    binomial_smooth,
    connected_components,
    dilate,
    erode,
    gaussian_kernel,
    separable_filter,
    srgb_to_lab,
)
from diffalign.shapes.render import shape_coverage
from diffalign.shapes.rules import Detection
from diffalign.shapes.vocab import COLOR_NAMES, COLORS, SHAPES
from diffalign.utils.images import to_uint8

FOREGROUND_THRESHOLD = 0.18
"""A smoothed pixel is foreground when its RGB distance (in [0, 1] units) from the background
exceeds this; every named colour is >= 0.40 away from the grey background."""
MIN_AREA_FRACTION = 0.004
"""Components smaller than this share of the image (16 px at 64x64) are specks, not objects.
The smallest rendered object (a triangle of side 0.17) covers about 0.014."""
REGION_GROW = 3
"""A component's coverage map extends this many pixels past its thresholded mask, so that soft,
blurred edges are measured in full (pixels near other components are left out)."""
ALPHA_SLACK = 0.5
"""Coverage values are clipped to [-0.5, 1.5] only, so that noise averages out instead of
biasing the soft area upwards."""
TEMPLATE_BLURS = (0.0, 0.5, 1.0, 1.5, 2.0)
"""Extra Gaussian blurs (pixels) tried for each template, so blurry objects still fit."""

FIT_FLOOR = 0.60
FIT_FULL = 0.85
"""The detection score maps the template fit linearly from [FIT_FLOOR, FIT_FULL] to [0, 1].
Rendered shapes fit at >= 0.95 clean and >= 0.87 under blur sigma 1.5 plus noise (score 1);
malformed blobs (ellipses, merged shapes, L shapes, half discs, rings) fit at 0.40-0.81, i.e.
score < 0.9, GenEval's counting threshold, while GenEval's general 0.3 threshold sits at fit 0.675."""

AREA_FACTOR = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5}
"""Shape area / bounding-box area for each shape (its box is a square of side ``size``)."""
CENTROID_DROP = {"circle": 0.0, "square": 0.0, "triangle": 1 / 6, "diamond": 0.0}
"""(centroid y - box centre y) / size: the upward triangle's centroid sits 1/6 below its box centre."""

# each template blur followed by the image's binomial smoothing, as one kernel
TEMPLATE_KERNELS = [
    np.convolve(gaussian_kernel(s), BINOMIAL_KERNEL) if s > 0 else BINOMIAL_KERNEL for s in TEMPLATE_BLURS
]
_PALETTE_LAB = srgb_to_lab(np.array([COLORS[c] for c in COLOR_NAMES], dtype=np.float64) / 255.0)


def nearest_color(rgb) -> str:
    """Name of the GenEval colour nearest to ``rgb`` (floats in [0, 1]) in CIELAB."""
    d = np.linalg.norm(_PALETTE_LAB - srgb_to_lab(np.asarray(rgb, dtype=np.float64)), axis=-1)
    return COLOR_NAMES[int(np.argmin(d))]


def as_float_image(image) -> np.ndarray:
    """uint8 HxWx3 array, PIL image, or float tensor/array [3,H,W] in [0, 1] -> float HxWx3 in [0, 1]."""
    return to_uint8(image).astype(np.float64) / 255.0


def _core(component: np.ndarray, min_pixels: int = 6) -> np.ndarray:
    core = component
    for _ in range(2):
        smaller = erode(core)
        if smaller.sum() < min_pixels:
            break
        core = smaller
    return core


def _fit_shape(alpha: np.ndarray, shape: str) -> tuple[float, tuple[float, float, float, float]]:
    """Best (fit, box) of ``shape``'s template against the soft coverage map ``alpha``.

    The template's size comes from the soft area and its centre from the centroid (both are
    unchanged by blur); it is blurred by each of :data:`TEMPLATE_BLURS` and smoothed like the
    image. fit = 1 - sum|alpha - template| / (sum alpha + sum template), 1 for a perfect match."""
    h, w = alpha.shape
    area = alpha.sum()
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    mx, my = (alpha * xs).sum() / area, (alpha * ys).sum() / area
    size = float(np.sqrt(area / AREA_FACTOR[shape]))
    cy = my - CENTROID_DROP[shape] * size
    box = (mx - size / 2, cy - size / 2, mx + size / 2, cy + size / 2)
    sharp = shape_coverage(shape, box, h, w)
    best = -np.inf
    for kernel in TEMPLATE_KERNELS:
        template = separable_filter(sharp, kernel)
        score = 1.0 - np.abs(alpha - template).sum() / (alpha.sum() + template.sum())
        best = max(best, float(score))
    return best, box


@dataclass(frozen=True)
class Blob:
    """One foreground component: its soft coverage map ``alpha`` over the window starting at
    pixel (``x0``, ``y0``), and its estimated ``rgb`` colour in [0, 1]."""

    alpha: np.ndarray
    x0: int
    y0: int
    rgb: np.ndarray


def find_blobs(
    image,
    foreground_threshold: float = FOREGROUND_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> list[Blob]:
    """Segment one image into foreground components (see the module docstring)."""
    rgb = as_float_image(image)
    h, w = rgb.shape[:2]
    background = np.median(rgb.reshape(-1, 3), axis=0)
    smooth = binomial_smooth(rgb)
    distance = np.linalg.norm(smooth - background, axis=-1)
    foreground = distance > foreground_threshold
    labels, n = connected_components(foreground)
    blobs = []
    for k in range(1, n + 1):
        component = labels == k
        if component.sum() < min_area_fraction * h * w:
            continue
        color = np.median(smooth[_core(component)], axis=0)
        axis = color - background
        norm2 = float(axis @ axis)
        if norm2 < foreground_threshold**2:
            continue
        ys, xs = np.nonzero(component)
        y0, y1 = max(ys.min() - REGION_GROW, 0), min(ys.max() + REGION_GROW + 1, h)
        x0, x1 = max(xs.min() - REGION_GROW, 0), min(xs.max() + REGION_GROW + 1, w)
        region = component[y0:y1, x0:x1]
        for _ in range(REGION_GROW):
            region = dilate(region)
        region &= ~dilate(foreground & ~component)[y0:y1, x0:x1]  # keep clear of other objects
        alpha = np.clip((smooth[y0:y1, x0:x1] - background) @ axis / norm2, -ALPHA_SLACK, 1.0 + ALPHA_SLACK) * region
        if alpha.sum() < 0.5 * min_area_fraction * h * w:
            continue
        blobs.append(Blob(alpha, int(x0), int(y0), color))
    return blobs


def detect_shapes(
    image,
    foreground_threshold: float = FOREGROUND_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> list[Detection]:
    """Detect the shapes in one image (see the module docstring), best score first."""
    found = []
    for blob in find_blobs(image, foreground_threshold, min_area_fraction):
        fits = [(*_fit_shape(blob.alpha, shape), shape) for shape in SHAPES]
        fit, box, shape = max(fits, key=lambda f: f[0])
        box = (box[0] + blob.x0, box[1] + blob.y0, box[2] + blob.x0, box[3] + blob.y0)
        score = float(np.clip((fit - FIT_FLOOR) / (FIT_FULL - FIT_FLOOR), 0.0, 1.0))
        found.append((fit, Detection(shape, tuple(float(v) for v in box), score, nearest_color(blob.rgb))))
    found.sort(key=lambda f: -f[0])  # best fit first (scores saturate at 1)
    return [d for _, d in found]


class ShapesDetector(Detector):
    """The shapes world's pixel detector (:func:`diffalign.shapes.detect.detect_shapes`); ``options``
    go to it (``foreground_threshold``, ``min_area_fraction``)."""

    name = "shapes"
    provides_colors = True
    #: the classes it can detect (``auto_detector`` picks it when a prompt set names only these).
    classes = SHAPES

    def __init__(self, **options):
        self.options = options

    def detect(self, image) -> list[Detection]:
        return detect_shapes(image, **self.options)
