"""The shapes judge: GenEval's verdict for shapes-world images, from the pixels alone.

The pixel part is :func:`diffalign.shapes.detect.detect_shapes`; the verdict is GenEval's pure rule
engine :func:`diffalign.geneval.judge`; :func:`summarize` (GenEval's aggregation, from
:mod:`diffalign.geneval.summary`) gives per-tag accuracy and ``overall`` = unweighted mean of
the tag scores.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from diffalign.geneval.rules import Detection, judge
from diffalign.geneval.summary import summarize
from diffalign.shapes.detect import detect_shapes
from diffalign.utils.images import batch_to_uint8

__all__ = ["Detection", "judge_image", "judge_batch", "summarize"]


def judge_image(image, row: Mapping, **rule_options) -> tuple[bool, str]:
    """(correct, reason) for one image (uint8 HxWx3 array, PIL image, or float [3,H,W] in [0, 1])
    against its GenEval-format ``row``. ``rule_options`` go to :func:`~diffalign.geneval.judge`
    (``threshold``, ``counting_threshold``, ``max_objects``, ``max_overlap``, ``position_margin``...)."""
    return judge(row, detect_shapes(image), **rule_options)


def judge_batch(images, rows: Sequence[Mapping], **rule_options) -> list[tuple[bool, str]]:
    """:func:`judge_image` over a batch (float tensor [B,3,H,W] in [0, 1], or a list of images)."""
    arrays = batch_to_uint8(images)
    if len(arrays) != len(rows):
        raise ValueError(f"judge_batch got {len(arrays)} images but {len(rows)} rows")
    return [judge_image(image, row, **rule_options) for image, row in zip(arrays, rows)]
