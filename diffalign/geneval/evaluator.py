"""A detector, a colour source and GenEval's rule constants put together: images + rows -> verdicts.

Colour sources (``color_classifier``): ``"auto"`` (the detector's own colours when it names them,
as the shapes detector does, otherwise GenEval's CLIP classifier), ``"clip"``, ``"detector"``, or a
:class:`~diffalign.geneval.colors.ClipColorClassifier` instance. The CLIP model is built only
when a colour clause needs it.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from PIL import Image

from diffalign.geneval.colors import ClipColorClassifier
from diffalign.geneval.detectors import Detector, load_detector
from diffalign.geneval.rules import RULE_DEFAULTS, Detection, judge, keep_detections, partial_credit

COLOR_SOURCES = ("auto", "clip", "detector")


def auto_detector(rows: Sequence[Mapping]) -> str:
    """``shapes`` when every class the rows mention is a shapes-world shape, else ``mask2former``."""
    from diffalign.geneval.detectors import DETECTORS

    classes = {c["class"] for r in rows for c in [*r["include"], *r.get("exclude", [])]}
    return "shapes" if classes and classes <= set(DETECTORS.get("shapes").classes) else "mask2former"


def protocol_label(detector_name: str) -> str:
    """How results are labelled: the protocol is GenEval's, the numbers belong to the detector."""
    return f"GenEval protocol, detector={detector_name}"


class GenEvalEvaluator:
    """Judges images against GenEval rows with one detector (see the module docstring).

    ``rule_options`` override :data:`~diffalign.geneval.rules.RULE_DEFAULTS`;
    ``detector_options`` go to :func:`~diffalign.geneval.detectors.load_detector`;
    ``clip_options`` to :class:`~diffalign.geneval.colors.ClipColorClassifier`.
    """

    def __init__(
        self,
        detector: str | Detector = "shapes",
        color_classifier: str | ClipColorClassifier = "auto",
        rule_options: Mapping[str, Any] | None = None,
        detector_options: Mapping[str, Any] | None = None,
        clip_options: Mapping[str, Any] | None = None,
    ):
        unknown = sorted(set(rule_options or {}) - set(RULE_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown GenEval rule options {unknown}; known: {', '.join(RULE_DEFAULTS)}")
        self.rules = {**RULE_DEFAULTS, **(rule_options or {})}
        self.detector = load_detector(detector, **(detector_options or {}))
        if isinstance(color_classifier, str) and color_classifier not in COLOR_SOURCES:
            raise ValueError(f"unknown color_classifier {color_classifier!r}; expected one of {', '.join(COLOR_SOURCES)}")
        if color_classifier == "auto":
            color_classifier = "detector" if self.detector.provides_colors else "clip"
        if color_classifier == "detector" and not self.detector.provides_colors:
            raise ValueError(f"detector {self.detector.name!r} does not name colours; use color_classifier='clip'")
        self._colors = color_classifier
        self._clip_options = dict(clip_options or {})

    @property
    def label(self) -> str:
        return protocol_label(self.detector.name)

    @property
    def color_classifier(self) -> ClipColorClassifier | None:
        """The CLIP classifier (built on first use), or None when detectors name colours."""
        if self._colors == "detector":
            return None
        if self._colors == "clip":
            self._colors = ClipColorClassifier(**self._clip_options)
        return self._colors

    def prepare(self, rows: Sequence[Mapping]) -> None:
        """Build now what judging ``rows`` will need (the CLIP colour classifier when a row has a colour
        clause and the detector does not name colours), so missing weights stop a job before it generates."""
        if self._colors != "detector" and any(c.get("color") for r in rows for c in r.get("include", [])):
            _ = self.color_classifier

    def describe(self) -> dict[str, Any]:
        if self._colors == "detector":
            colors: Any = "detector"
        elif self._colors == "clip":
            colors = {"name": "clip (not used yet)", **self._clip_options}
        else:
            colors = self._colors.describe()
        return {"label": self.label, "detector": self.detector.describe(), "color_classifier": colors, "rules": dict(self.rules)}

    def judge_detections(self, image: Image.Image, row: Mapping, detections: Sequence[Detection],
                         partial: bool = False) -> dict:
        """Verdict for one image from its detections: ``correct``, ``reason`` and the kept detections
        (``Detection`` objects, with the colour classifier's answer on the objects it classified);
        ``partial``: also ``credit``, :func:`~diffalign.geneval.rules.partial_credit` in [0, 1]."""
        classified: dict[int, str] = {}
        callback = None
        if self._colors != "detector":
            def callback(objects, classname):
                names = self.color_classifier.classify(image, objects, classname)
                classified.update({id(obj): name for obj, name in zip(objects, names)})
                return names

        correct, reason = judge(row, detections, classify_colors=callback, **self.rules)
        limit = self.rules["counting_threshold"] if row.get("tag") == "counting" else self.rules["threshold"]
        kept = keep_detections(detections, limit, int(self.rules["max_objects"]), self.rules["max_overlap"])
        objects = [
            Detection(d.label, d.box, d.score, classified.get(id(d), d.color if self._colors == "detector" else None))
            for dets in kept.values()
            for d in dets
        ]
        verdict = {"correct": bool(correct), "reason": reason, "detections": objects}
        if partial:
            verdict["credit"] = float(partial_credit(row, detections, classify_colors=callback, **self.rules))
        return verdict

    def evaluate(self, images: Sequence[Image.Image], rows: Sequence[Mapping], partial: bool = False) -> list[dict]:
        """:meth:`judge_detections` for each (image, row); detection runs batched."""
        if len(images) != len(rows):
            raise ValueError(f"{len(images)} images but {len(rows)} rows")
        images = [im.convert("RGB") for im in images]
        found = self.detector.detect_many(images)
        return [self.judge_detections(im, row, dets, partial) for im, row, dets in zip(images, rows, found)]
