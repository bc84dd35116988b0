"""GenEval's correctness rules as a pure function over detections (no pixels, no models).

``evaluate(row, detections)`` follows GenEval's ``evaluate_images.py``: per class keep detections
scoring above the threshold (0.9 for counting prompts, else 0.3), best first, at most 16, with
optional greedy NMS; each include clause takes the top-``count`` objects of its class, checks their
colours and then their position against the objects matched by the referenced clause; exclude
clauses fail when the kept objects of a class reach ``count``. Reason strings are GenEval's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from diffalign.shapes.geometry import POSITION_CUTOFF, POSITION_MARGIN, relative_position
from diffalign.shapes.vocab import COLOR_NAMES, RELATIONS

THRESHOLD = 0.3
"""GenEval's score threshold for keeping a detection."""
COUNTING_THRESHOLD = 0.9
"""GenEval's (stricter) threshold for prompts tagged counting."""
MAX_OBJECTS = 16
"""GenEval keeps at most this many detections per class."""
MAX_OVERLAP = 1.0
"""Greedy NMS IoU limit; 1.0 (GenEval's default) disables it."""


@dataclass(frozen=True)
class Detection:
    """One detected object: ``label`` (class name), ``box`` (x0, y0, x1, y1) in pixels,
    ``score`` (detector confidence), ``color`` (a colour name, or None when not classified)."""

    label: str
    box: tuple[float, float, float, float]
    score: float
    color: str | None = None


ColorClassifier = Callable[[Sequence[Detection], str], Sequence[str]]
"""(objects of one class, class name) -> one colour name per object."""


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes in continuous coordinates."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


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
            if max_overlap < 1.0:
                queue = [d for d in queue if box_iou(best.box, d.box) < max_overlap]
        kept[label] = out
    return kept


def _relations_text(relations: set[str]) -> str:
    return " and ".join(r for r in RELATIONS if r in relations)


def evaluate(
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
    """GenEval's verdict for one image: (correct, reason); reasons are joined by newlines.

    Colours come from ``classify_colors(objects, class)`` when given (GenEval uses CLIP on crops),
    otherwise from each detection's ``color``. Relations of several at once are listed in the
    order left of, right of, above, below (GenEval prints a set, in no fixed order).
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
