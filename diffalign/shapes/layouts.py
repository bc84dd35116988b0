"""Canonical scene layouts: a low-variance scene sampler for pretraining the shipped pipelines.

:func:`diffalign.shapes.scene.scene_for_row` places objects anywhere, so the images of one prompt
differ mostly in layout, and a small denoiser trained for an hour on two CPU cores learns the
layouts long before it learns to follow the prompt. :func:`canonical_scene_for_row` places the
objects of a row on fixed slots in the order the row names them (one object centred; two side by
side, or stacked for above/below; three in a row; four on a 2x2 grid) with a little jitter of
position and size, so what varies between images of one prompt is mostly what the prompt says.
Every scene still satisfies its row exactly (the judge's verdict on a render is "correct").
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from diffalign.shapes.scene import Scene, ShapeObject, _as_rng, include_clauses
from diffalign.shapes.vocab import COLOR_NAMES

SLOTS = {
    1: ((0.5, 0.5),),
    2: ((0.3, 0.5), (0.7, 0.5)),
    3: ((0.2, 0.5), (0.5, 0.5), (0.8, 0.5)),
    4: ((0.3, 0.3), (0.7, 0.3), (0.3, 0.7), (0.7, 0.7)),
}
"""Slot centres (x, y as fractions of the image, y down) for scenes of 1-4 objects."""
STACKED = ((0.5, 0.3), (0.5, 0.7))
"""Two objects one above the other (rows with an above/below relation)."""
SIZES = {1: 0.3, 2: 0.28, 3: 0.2, 4: 0.24}
"""Box side (fraction of the image) per number of objects."""
JITTER = 0.03
"""Uniform jitter (+-) of each centre coordinate and of the size."""


def _ordered_specs(row: Mapping) -> tuple[list[tuple[str, str | None]], bool]:
    """(shape, fixed colour) per object in slot order, and whether the slots are stacked."""
    clauses = include_clauses(row)
    specs = []
    for clause in clauses:
        specs.append([(clause["class"], clause.get("color"))] * int(clause.get("count", 1)))
    stacked = False
    for ci, clause in enumerate(clauses):
        position = clause.get("position")
        if position is None:
            continue
        if len(clauses) != 2 or len(specs[0]) != 1 or len(specs[1]) != 1:
            raise ValueError(f"canonical layouts place one object per side of a relation, got {row.get('prompt', row)!r}")
        relation, target = position[0], int(position[1])
        mover, anchor = specs[ci][0], specs[target][0]
        first_is_mover = relation in ("left of", "above")
        stacked = relation in ("above", "below")
        specs = [[mover], [anchor]] if first_is_mover else [[anchor], [mover]]
    return [s for group in specs for s in group], stacked


def canonical_scene_for_row(row: Mapping, rng: np.random.Generator | int | None = None, jitter: float = JITTER) -> Scene:
    """A scene satisfying ``row`` with its objects on the canonical slots (see the module doc);
    objects of clauses without a colour get independent random colours."""
    rng = _as_rng(rng)
    specs, stacked = _ordered_specs(row)
    n = len(specs)
    if n not in SLOTS:
        raise ValueError(f"canonical layouts hold 1-4 objects, row {row.get('prompt', row)!r} asks for {n}")
    slots = STACKED if stacked else SLOTS[n]
    objects = []
    for (shape, color), (cx, cy) in zip(specs, slots):
        size = SIZES[n] + float(rng.uniform(-jitter, jitter))
        cx, cy = cx + float(rng.uniform(-jitter, jitter)), cy + float(rng.uniform(-jitter, jitter))
        name = color if color is not None else COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
        objects.append(ShapeObject(shape, name, cx, cy, size))
    return Scene(tuple(objects))
