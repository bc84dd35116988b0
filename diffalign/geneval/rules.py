"""GenEval's correctness rules as a pure function over detections (no pixels, no models).

:func:`judge` follows GenEval's ``evaluate_images.py`` (djghosh13/geneval):

1. per class keep detections scoring strictly above the threshold (``counting_threshold`` = 0.9 for
   prompts tagged ``counting``, else ``threshold`` = 0.3), best first, at most ``max_objects`` = 16,
   then greedy NMS at IoU ``max_overlap`` (1.0 = off, GenEval's default);
2. each ``include`` clause takes the top-``count`` objects of its class and fails when there are
   fewer; only those objects are colour-checked (the colour must be found on ``count`` of them) and,
   if the clause still holds, position-checked against every object matched by the referenced earlier
   clause (a failed referenced clause means "no target");
3. each ``exclude`` clause fails when the kept objects of its class reach ``count``.

Failure reasons are GenEval's strings, joined by newlines. All constants are keyword arguments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from diffalign.geneval.vocab import COLOR_NAMES, RELATIONS

THRESHOLD = 0.3
"""Score a detection must exceed to be kept."""
COUNTING_THRESHOLD = 0.9
"""The stricter threshold for prompts tagged ``counting``."""
MAX_OBJECTS = 16
"""At most this many detections are kept per class."""
MAX_OVERLAP = 1.0
"""Greedy NMS drops boxes whose IoU with a kept one is >= this; 1.0 disables NMS."""
POSITION_MARGIN = 0.1
"""GenEval's ``position_threshold``: each offset axis shrinks by margin * (dim_a + dim_b)."""
POSITION_CUTOFF = 0.5
"""A normalised shrunk offset beyond +-0.5 on an axis names the relation."""
ZERO_OFFSET = 1e-3
"""A shrunk offset under this on both axes (box units, pixels for detections) means no relation."""

RULE_DEFAULTS: dict[str, float] = {
    "threshold": THRESHOLD,
    "counting_threshold": COUNTING_THRESHOLD,
    "max_objects": MAX_OBJECTS,
    "max_overlap": MAX_OVERLAP,
    "position_margin": POSITION_MARGIN,
    "position_cutoff": POSITION_CUTOFF,
}
"""GenEval's constants under the keyword names :func:`judge` takes."""

Box = Sequence[float]


@dataclass(frozen=True)
class Detection:
    """One detected object.

    ``label``: class name in GenEval's spelling; ``box``: (x0, y0, x1, y1) in pixels; ``score``: the
    detector's confidence; ``color``: the colour classifier's answer for this object when it has been
    classified (or a detector's own colour), else None; ``mask``: optional boolean [H, W] instance mask
    at image resolution (used by the colour classifier's grey-background crop; not compared).
    """

    label: str
    box: tuple[float, float, float, float]
    score: float
    color: str | None = None
    mask: Any = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        """JSON-ready record (without the mask)."""
        out = {"label": self.label, "box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4)}
        if self.color is not None:
            out["color"] = self.color
        return out


ColorClassifier = Callable[[Sequence[Detection], str], Sequence[str]]
"""(objects of one class, class name) -> one colour name per object."""


def box_iou(a: Box, b: Box) -> float:
    """GenEval's IoU of two (x0, y0, x1, y1) pixel boxes: inclusive pixel extents (+1 on each side
    length, as mmdet's legacy convention), 0 when the union is empty."""

    def area(x0, y0, x1, y1):
        return max(x1 - x0 + 1, 0) * max(y1 - y0 + 1, 0)

    inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(*a[:4]) + area(*b[:4]) - inter
    return inter / union if union else 0.0


def keep_detections(
    detections: Iterable[Detection],
    threshold: float = THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = MAX_OVERLAP,
) -> dict[str, list[Detection]]:
    """Per class: detections with score > ``threshold``, best first, at most ``max_objects``,
    then greedy NMS dropping boxes with IoU >= ``max_overlap`` to a kept one (off at 1.0)."""
    by_class: dict[str, list[Detection]] = {}
    for det in detections:
        if det.score > threshold:
            by_class.setdefault(det.label, []).append(det)
    kept = {}
    for label, dets in by_class.items():
        queue = sorted(dets, key=lambda d: -d.score)[:max_objects]
        out = []
        while queue:
            best = queue.pop(0)
            out.append(best)
            if max_overlap != 1:
                queue = [d for d in queue if box_iou(best.box, d.box) < max_overlap]
        kept[label] = out
    return kept


def _shrunk_offset(box_a: Box, box_b: Box, margin: float) -> tuple[float, float, float]:
    """(rx, ry, norm): the centre offset of A from B, each axis moved towards zero by
    ``margin * (dim_a + dim_b)`` (not past zero), and the length of the unshrunk offset."""
    ax0, ay0, ax1, ay1 = (float(v) for v in box_a[:4])
    bx0, by0, bx1, by1 = (float(v) for v in box_b[:4])
    off_x = (ax0 + ax1) / 2 - (bx0 + bx1) / 2
    off_y = (ay0 + ay1) / 2 - (by0 + by1) / 2
    rx = math.copysign(max(abs(off_x) - margin * (abs(ax1 - ax0) + abs(bx1 - bx0)), 0.0), off_x)
    ry = math.copysign(max(abs(off_y) - margin * (abs(ay1 - ay0) + abs(by1 - by0)), 0.0), off_y)
    return rx, ry, math.hypot(off_x, off_y)


def relation_components(box_a: Box, box_b: Box, margin: float = POSITION_MARGIN) -> tuple[float, float]:
    """GenEval's shrunk, normalised offset (dx, dy) of A's centre from B's centre.

    Each axis of ``centre_a - centre_b`` moves towards zero by ``margin * (dim_a + dim_b)`` (not past
    zero) and the result is divided by the length of the *unshrunk* offset. (0, 0) when the centres
    coincide. Boxes are (x0, y0, x1, y1) in any consistent unit.
    """
    rx, ry, norm = _shrunk_offset(box_a, box_b, margin)
    return (0.0, 0.0) if norm == 0.0 else (rx / norm, ry / norm)


def relative_position(box_a: Box, box_b: Box, margin: float = POSITION_MARGIN, cutoff: float = POSITION_CUTOFF) -> set[str]:
    """Relations that hold for A relative to B: a subset of {left of, right of, above, below}.

    Empty when the shrunk offset is under :data:`ZERO_OFFSET` on both axes (GenEval's test, in box
    units); otherwise an axis names a relation when its normalised component passes ``cutoff``.
    """
    rx, ry, norm = _shrunk_offset(box_a, box_b, margin)
    if abs(rx) < ZERO_OFFSET and abs(ry) < ZERO_OFFSET:
        return set()
    dx, dy = rx / norm, ry / norm
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


def _relations_text(relations: set[str]) -> str:
    return " and ".join(r for r in RELATIONS if r in relations)


def judge(
    row: Mapping,
    detections: Iterable[Detection],
    *,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = MAX_OVERLAP,
    position_margin: float = POSITION_MARGIN,
    position_cutoff: float = POSITION_CUTOFF,
    classify_colors: ColorClassifier | None = None,
) -> tuple[bool, str]:
    """GenEval's verdict for one image: ``(correct, reason)``; reasons are joined by newlines.

    ``row`` is one GenEval metadata record; ``detections`` any list of :class:`Detection` (any order,
    any classes). Colours come from ``classify_colors(objects, class)`` when given (GenEval runs CLIP
    on crops of exactly those objects), otherwise from each detection's ``color``. Several relations
    are listed in the order left of, right of, above, below (GenEval prints a set, in no fixed order).
    """
    limit = counting_threshold if row.get("tag") == "counting" else threshold
    objects = keep_detections(detections, limit, max_objects, max_overlap)
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []
    for clause in row.get("include", []):
        name, count = clause["class"], int(clause["count"])
        found = objects.get(name, [])[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in clause:
                want = clause["color"]
                colors = list(classify_colors(found, name)) if classify_colors else [d.color for d in found]
                if colors.count(want) < count:
                    matched = False
                    tally = ", ".join(f"{colors.count(c)} {c}" for c in COLOR_NAMES if c in colors)
                    reasons.append(f"expected {want} {name}>={count}, found {colors.count(want)} {want}; and {tally}")
            if "position" in clause and matched:
                relation, group = clause["position"][0], int(clause["position"][1])
                targets = groups[group]
                if targets is None:
                    matched = False
                    reasons.append(f"no target for {name} to be {relation}")
                else:
                    for obj in found:
                        for target in targets:
                            actual = relative_position(obj.box, target.box, position_margin, position_cutoff)
                            if relation not in actual:
                                matched = False
                                reasons.append(f"expected {name} {relation} target, found {_relations_text(actual)} target")
                                break
                        if not matched:
                            break
        correct &= matched
        groups.append(found if matched else None)
    for clause in row.get("exclude", []):
        name, count = clause["class"], int(clause["count"])
        n_found = len(objects.get(name, []))
        if n_found >= count:
            correct = False
            reasons.append(f"expected {name}<{count}, found {n_found}")
    return correct, "\n".join(reasons)


def partial_credit(
    row: Mapping,
    detections: Iterable[Detection],
    *,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = MAX_OVERLAP,
    position_margin: float = POSITION_MARGIN,
    position_cutoff: float = POSITION_CUTOFF,
    classify_colors: ColorClassifier | None = None,
) -> float:
    """Partial credit in [0, 1] for one image: the mean over the row's checks of how far each holds.

    A dense training reward beside :func:`judge`'s 0/1 verdict (Flow-GRPO trains on a non-strict
    GenEval score for the same reason: a 0/1 reward that a prompt almost always passes or fails gives
    its group no variance). The checks, on the same kept detections as :func:`judge`:

    - each ``include`` clause: its count, ``min(found, count) / count``; its colour, when it has one,
      ``min(objects of that colour among the top-count, count) / count`` (0 when none is found); its
      position, when it has one, 1 when every top-count object stands in the relation to every object
      of the referenced clause (that clause fully matched), else 0;
    - each ``exclude`` clause: 1 when fewer than ``count`` objects of its class are kept, else 0.

    An image :func:`judge` calls correct scores exactly 1.0 and an incorrect one less than 1.0.
    """
    limit = counting_threshold if row.get("tag") == "counting" else threshold
    objects = keep_detections(detections, limit, max_objects, max_overlap)
    credits: list[float] = []
    groups: list[list[Detection] | None] = []
    for clause in row.get("include", []):
        name, count = clause["class"], int(clause["count"])
        found = objects.get(name, [])[:count]
        full = len(found) >= count
        credits.append(min(len(found), count) / count)
        if "color" in clause:
            colors = (list(classify_colors(found, name)) if classify_colors else [d.color for d in found]) if found else []
            n_color = colors.count(clause["color"])
            credits.append(min(n_color, count) / count)
            full = full and n_color >= count
        if "position" in clause:
            relation, group = clause["position"][0], int(clause["position"][1])
            targets = groups[group]
            holds = full and targets is not None and all(
                relation in relative_position(obj.box, target.box, position_margin, position_cutoff)
                for obj in found for target in targets)
            credits.append(1.0 if holds else 0.0)
            full = holds
        groups.append(found if full else None)
    for clause in row.get("exclude", []):
        credits.append(1.0 if len(objects.get(clause["class"], [])) < int(clause["count"]) else 0.0)
    return sum(credits) / len(credits) if credits else 1.0
