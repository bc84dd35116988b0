"""Box geometry shared by the scene sampler and the judge: GenEval's relative-position rule.

Boxes are ``(x0, y0, x1, y1)`` in any consistent unit (pixels for detections, [0, 1] for
scenes); the rule is scale-free. The image y axis points down.
"""
from __future__ import annotations

import math
from typing import Sequence

POSITION_MARGIN = 0.1
"""GenEval's ``position_threshold``: each offset axis shrinks by margin * (dim_a + dim_b)."""
POSITION_CUTOFF = 0.5
"""A normalised shrunk offset beyond +-0.5 on an axis names the relation."""

Box = Sequence[float]


def relation_components(box_a: Box, box_b: Box, margin: float = POSITION_MARGIN) -> tuple[float, float]:
    """GenEval's shrunk, normalised offset (dx, dy) of A's centre from B's centre.

    Each axis of ``centre_a - centre_b`` is moved towards zero by ``margin * (dim_a + dim_b)``
    (not past zero) and the result is divided by the length of the *unshrunk* offset.
    Returns (0, 0) when the centres coincide.
    """
    ax0, ay0, ax1, ay1 = (float(v) for v in box_a)
    bx0, by0, bx1, by1 = (float(v) for v in box_b)
    off_x = (ax0 + ax1) / 2 - (bx0 + bx1) / 2
    off_y = (ay0 + ay1) / 2 - (by0 + by1) / 2
    norm = math.hypot(off_x, off_y)
    if norm == 0.0:
        return 0.0, 0.0
    shrink_x = margin * (abs(ax1 - ax0) + abs(bx1 - bx0))
    shrink_y = margin * (abs(ay1 - ay0) + abs(by1 - by0))
    rx = math.copysign(max(abs(off_x) - shrink_x, 0.0), off_x)
    ry = math.copysign(max(abs(off_y) - shrink_y, 0.0), off_y)
    return rx / norm, ry / norm


def relative_position(
    box_a: Box, box_b: Box, margin: float = POSITION_MARGIN, cutoff: float = POSITION_CUTOFF
) -> set[str]:
    """Relations that hold for A relative to B: a subset of {left of, right of, above, below}."""
    dx, dy = relation_components(box_a, box_b, margin)
    relations = set()
    if dx < -cutoff:
        relations.add("left of")
    if dx > cutoff:
        relations.add("right of")
    if dy < -cutoff:
        relations.add("above")
    if dy > cutoff:
        relations.add("below")
    return relations


def relation_strength(relation: str, box_a: Box, box_b: Box, margin: float = POSITION_MARGIN) -> tuple[float, float]:
    """(along, across) for ``relation`` of A relative to B.

    ``along`` is the signed shrunk component in the relation's direction (the relation holds
    when it exceeds the cut-off); ``across`` is the magnitude of the other component.
    """
    dx, dy = relation_components(box_a, box_b, margin)
    if relation == "left of":
        return -dx, abs(dy)
    if relation == "right of":
        return dx, abs(dy)
    if relation == "above":
        return -dy, abs(dx)
    if relation == "below":
        return dy, abs(dx)
    raise ValueError(f"unknown relation {relation!r}; expected one of left of, right of, above, below")
