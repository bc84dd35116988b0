"""Anti-aliased rendering of shapes-world scenes (and of single-shape coverage maps)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from diffalign.shapes.scene import Scene
from diffalign.shapes.vocab import BACKGROUND, COLORS

SUPERSAMPLE = 4
"""Shapes are drawn at this many times the output size and box-filtered down (anti-aliasing)."""


def shape_outline(shape: str, box: Sequence[float]) -> list[tuple[float, float]] | None:
    """Polygon vertices of ``shape`` filling ``box`` = (x0, y0, x1, y1) in continuous pixel
    coordinates (pixel i spans [i, i+1]), in PIL's drawing convention; ``None`` for the circle."""
    # PIL fills both end pixels of a span, so a box covering pixels X0..X1-1 is drawn with
    # corners (X0, Y0) and (X1 - 1, Y1 - 1), as for ellipses.
    x0, y0, x1, y1 = box[0], box[1], box[2] - 1, box[3] - 1
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        return None
    if shape == "square":
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if shape == "triangle":
        return [(xm, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(xm, y0), (x1, ym), (xm, y1), (x0, ym)]
    raise ValueError(f"no outline for shape {shape!r}")


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: Sequence[float], fill) -> None:
    outline = shape_outline(shape, box)
    if outline is None:
        draw.ellipse([box[0], box[1], box[2] - 1, box[3] - 1], fill=fill)
    else:
        draw.polygon(outline, fill=fill)


def render_scene(scene: Scene, size: int = 64) -> np.ndarray:
    """Render ``scene`` on the grey background: uint8 array [size, size, 3]."""
    canvas = size * SUPERSAMPLE
    image = Image.new("RGB", (canvas, canvas), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw(draw, obj.shape, [v * canvas for v in obj.box], COLORS[obj.color])
    return np.array(image.resize((size, size), Image.BOX), dtype=np.uint8)


def shape_coverage(shape: str, box: Sequence[float], height: int, width: int) -> np.ndarray:
    """Fraction of each pixel of a [height, width] grid covered by ``shape`` filling ``box``
    (continuous pixel coordinates): float array in [0, 1], anti-aliased like :func:`render_scene`."""
    s = SUPERSAMPLE
    image = Image.new("L", (width * s, height * s), 0)
    _draw(ImageDraw.Draw(image), shape, [v * s for v in box], 255)
    return np.asarray(image.resize((width, height), Image.BOX), dtype=np.float64) / 255.0
