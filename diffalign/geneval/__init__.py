"""GenEval (djghosh13/geneval) with a pluggable detector.

- the pure rule engine: :class:`Detection` and :func:`judge` (``judge(row, detections) -> (correct,
  reason)``), with GenEval's constants as keyword arguments (:data:`RULE_DEFAULTS`);
- metadata: :func:`read_metadata`, :func:`write_metadata`, :func:`validate_row`;
- aggregation: :func:`summarize` (per tag + ``overall``) and :func:`summarize_results` (adds
  "% correct images" / "% correct prompts");
- detectors behind one interface (:mod:`.detectors`: ``load_detector("shapes" | "mask2former" |
  "detr" | "owlv2" | path or hub id)``) and the CLIP colour classifier (:mod:`.colors`);
- the job (:mod:`.job`): GenEval's folder layout, ``results.jsonl``, ``summary.json`` and reports.

Numbers produced with any detector other than GenEval's mmdet Mask2Former are labelled
"GenEval protocol, detector=NAME": detectors differ in calibration, so they are not GenEval numbers.
"""
from diffalign.geneval.metadata import read_metadata, validate_row, write_metadata
from diffalign.geneval.rules import (
    COUNTING_THRESHOLD,
    MAX_OBJECTS,
    MAX_OVERLAP,
    POSITION_CUTOFF,
    POSITION_MARGIN,
    RULE_DEFAULTS,
    THRESHOLD,
    Detection,
    partial_credit,
    box_iou,
    judge,
    keep_detections,
    relative_position,
)
from diffalign.geneval.summary import summarize, summarize_results
from diffalign.geneval.vocab import COLOR_NAMES, OBJECT_NAMES, RELATIONS, RENAMED_CLASSES, TAGS

__all__ = [
    "COLOR_NAMES",
    "COUNTING_THRESHOLD",
    "MAX_OBJECTS",
    "MAX_OVERLAP",
    "OBJECT_NAMES",
    "POSITION_CUTOFF",
    "POSITION_MARGIN",
    "RELATIONS",
    "RENAMED_CLASSES",
    "RULE_DEFAULTS",
    "TAGS",
    "THRESHOLD",
    "Detection",
    "box_iou",
    "judge",
    "keep_detections",
    "partial_credit",
    "read_metadata",
    "relative_position",
    "summarize",
    "summarize_results",
    "validate_row",
    "write_metadata",
]
