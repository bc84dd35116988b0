"""The shapes judge: GenEval's verdict for shapes-world images, from the pixels alone.

The pixel part is :func:`diffalign.shapes.detect.detect_shapes`; the verdict is the pure rule
engine :func:`diffalign.shapes.rules.evaluate`; :func:`summarize` aggregates like GenEval
(per-tag accuracy, ``overall`` = unweighted mean of the tag scores).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from diffalign.shapes.detect import detect_shapes
from diffalign.shapes.rules import Detection, evaluate
from diffalign.shapes.vocab import CATEGORIES
from diffalign.utils.images import batch_to_uint8

__all__ = ["Detection", "judge_image", "judge_batch", "summarize"]


def judge_image(image, row: Mapping, **rule_options) -> tuple[bool, str]:
    """(correct, reason) for one image (uint8 HxWx3 array, PIL image, or float [3,H,W] in [0, 1])
    against its GenEval-format ``row``. ``rule_options`` go to :func:`~diffalign.shapes.rules.evaluate`
    (``threshold``, ``counting_threshold``, ``max_objects``, ``max_overlap``, ``position_margin``...)."""
    return evaluate(row, detect_shapes(image), **rule_options)


def judge_batch(images, rows: Sequence[Mapping], **rule_options) -> list[tuple[bool, str]]:
    """:func:`judge_image` over a batch (float tensor [B,3,H,W] in [0, 1], or a list of images)."""
    arrays = batch_to_uint8(images)
    if len(arrays) != len(rows):
        raise ValueError(f"judge_batch got {len(arrays)} images but {len(rows)} rows")
    return [judge_image(image, row, **rule_options) for image, row in zip(arrays, rows)]


def summarize(rows: Sequence[Mapping], corrects: Iterable) -> dict[str, float]:
    """GenEval aggregation: accuracy per tag (tags present, in GenEval's order; unknown tags
    after them) and ``overall`` = unweighted mean of those tag scores. ``corrects`` holds bools
    or the (correct, reason) pairs that :func:`judge_batch` returns."""
    flags = [bool(c[0]) if isinstance(c, tuple) else bool(c) for c in corrects]
    if len(flags) != len(rows):
        raise ValueError(f"summarize got {len(rows)} rows but {len(flags)} verdicts")
    if not rows:
        raise ValueError("summarize needs at least one row")
    per_tag: dict[str, list[bool]] = {}
    for row, flag in zip(rows, flags):
        per_tag.setdefault(row["tag"], []).append(flag)
    order = [t for t in CATEGORIES if t in per_tag] + sorted(t for t in per_tag if t not in CATEGORIES)
    scores = {t: sum(per_tag[t]) / len(per_tag[t]) for t in order}
    scores["overall"] = sum(scores.values()) / len(scores)
    return scores
