"""Scenes of the shapes world and a sampler of scenes that satisfy a GenEval-format row."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from diffalign.shapes.geometry import POSITION_CUTOFF, relation_strength
from diffalign.shapes.rules import Detection
from diffalign.shapes.vocab import COLOR_NAMES, COLORS, SHAPES

EDGE_PAD = 0.03
"""Minimum distance from an object's box to the image border (fraction of the image)."""
MIN_GAP = 0.06
"""Minimum gap between two objects' boxes, on at least one axis (fraction of the image)."""
SIZE_RANGE_FEW = (0.18, 0.32)
"""Object size range (box side, fraction of the image) for scenes with 1-2 objects."""
SIZE_RANGE_MANY = (0.17, 0.26)
"""Object size range for scenes with 3 or more objects."""
POSITION_SAFETY = 0.2
"""Sampled position scenes satisfy GenEval's relation with this much headroom over the cut-off
(shrunk component >= 0.5 + 0.2) and keep the cross component <= 0.5 - 0.15, so one relation is
unambiguous even after the judge's boxes move by a pixel."""
_CROSS_LIMIT = POSITION_CUTOFF - 0.15
_MAX_TRIES = 2000


@dataclass(frozen=True)
class ShapeObject:
    """One flat-coloured shape. ``cx, cy`` is the centre and ``size`` the side of its (square)
    bounding box, all as fractions of the image side; y points down."""

    shape: str
    color: str
    cx: float
    cy: float
    size: float

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {', '.join(SHAPES)}")
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; expected one of {', '.join(COLOR_NAMES)}")
        if not 0.0 < self.size <= 1.0:
            raise ValueError(f"object size must be in (0, 1], got {self.size}")

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in [0, 1] image coordinates."""
        h = self.size / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


@dataclass(frozen=True)
class Scene:
    """A list of non-overlapping objects on the grey background."""

    objects: tuple[ShapeObject, ...] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "objects", tuple(self.objects))

    def count(self, shape: str) -> int:
        return sum(o.shape == shape for o in self.objects)


def scene_detections(scene: Scene, size: int = 64) -> list[Detection]:
    """The ground-truth detections of ``scene`` rendered at ``size`` pixels (score 1, exact boxes
    and colours): what a perfect detector would report, for checking rows against scenes."""
    return [
        Detection(o.shape, tuple(v * size for v in o.box), 1.0, o.color) for o in scene.objects
    ]


def _boxes_apart(a: Sequence[float], b: Sequence[float], gap: float) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _position_ok(relation: str, box: Sequence[float], targets: Sequence[Sequence[float]]) -> bool:
    for target in targets:
        along, across = relation_strength(relation, box, target)
        if along < POSITION_CUTOFF + POSITION_SAFETY or across > _CROSS_LIMIT:
            return False
    return True


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def include_clauses(row: Mapping) -> list[Mapping]:
    """The row's include clauses, checked: at least one, each of a shape class."""
    clauses = list(row.get("include", []))
    if not clauses:
        raise ValueError(f"row has no include clauses: {row!r}")
    for ci, clause in enumerate(clauses):
        if clause.get("class") not in SHAPES:
            raise ValueError(f"include clause {ci} has class {clause.get('class')!r}, not a shape ({', '.join(SHAPES)})")
    return clauses


def scene_for_row(row: Mapping, rng: np.random.Generator | int | None = None) -> Scene:
    """A random scene that satisfies a GenEval-format ``row`` exactly.

    Each include clause contributes exactly ``count`` objects of its class, in its colour when the
    clause fixes one and otherwise in independently random colours; no other objects are drawn, so
    exclude clauses hold. Position clauses hold with :data:`POSITION_SAFETY` headroom against every
    object of the referenced group. Objects never overlap and keep :data:`MIN_GAP` between boxes.
    """
    rng = _as_rng(rng)
    clauses = include_clauses(row)
    specs: list[tuple[int, str, str | None]] = []  # (clause index, shape, fixed colour)
    for ci, clause in enumerate(clauses):
        specs.extend((ci, clause["class"], clause.get("color")) for _ in range(int(clause.get("count", 1))))
    lo, hi = SIZE_RANGE_FEW if len(specs) <= 2 else SIZE_RANGE_MANY

    for _ in range(_MAX_TRIES):
        placed: list[ShapeObject] = []
        by_clause: dict[int, list[tuple[float, float, float, float]]] = {}
        for ci, shape, color in specs:
            clause = clauses[ci]
            position = clause.get("position")
            for _attempt in range(50):
                size = float(rng.uniform(lo, hi))
                half = size / 2
                cx = float(rng.uniform(EDGE_PAD + half, 1 - EDGE_PAD - half))
                cy = float(rng.uniform(EDGE_PAD + half, 1 - EDGE_PAD - half))
                box = (cx - half, cy - half, cx + half, cy + half)
                if not all(_boxes_apart(box, o.box, MIN_GAP) for o in placed):
                    continue
                if position is not None:
                    relation, group = position[0], int(position[1])
                    if not _position_ok(relation, box, by_clause.get(group, [])):
                        continue
                break
            else:
                break
            name = color if color is not None else COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
            obj = ShapeObject(shape, name, cx, cy, size)
            placed.append(obj)
            by_clause.setdefault(ci, []).append(obj.box)
        else:
            return Scene(tuple(placed))
    raise RuntimeError(f"could not place a scene for row {row.get('prompt', row)!r} in {_MAX_TRIES} tries")
