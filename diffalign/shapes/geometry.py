"""Box geometry shared by the scene sampler and the judge: GenEval's relative-position rule
(:func:`relative_position`, :func:`relation_components`, from :mod:`diffalign.geneval.rules`)
and :func:`relation_strength`, which the scene sampler uses to place objects with headroom.

Boxes are ``(x0, y0, x1, y1)`` in any consistent unit (pixels for detections, [0, 1] for
scenes). The image y axis points down.
"""
from __future__ import annotations

from typing import Sequence

from diffalign.geneval.rules import (  # noqa: F401 (re-exported)
    POSITION_CUTOFF,
    POSITION_MARGIN,
    relation_components,
    relative_position,
)

Box = Sequence[float]


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
