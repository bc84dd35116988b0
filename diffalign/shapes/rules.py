"""GenEval's rule engine, re-exported for the shapes world (the one implementation lives in
:mod:`diffalign.geneval.rules`); ``evaluate`` is :func:`~diffalign.geneval.rules.judge`."""
from __future__ import annotations

from diffalign.geneval.rules import (  # noqa: F401 (re-exported)
    COUNTING_THRESHOLD,
    MAX_OBJECTS,
    MAX_OVERLAP,
    THRESHOLD,
    ColorClassifier,
    Detection,
    box_iou,
    judge,
    keep_detections,
)

evaluate = judge
