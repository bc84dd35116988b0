"""Object detectors behind one interface, for GenEval's rules.

A :class:`Detector` turns one RGB image into :class:`~diffalign.eval.geneval.rules.Detection` s with
GenEval's class names, boxes in pixels and raw scores (the rule engine applies thresholds itself).
``name`` labels every result it produces. Built-ins (:func:`load_detector`):

- ``shapes``: the shapes world's exact pixel detector (names colours itself);
- ``mask2former``, ``detr``, ``owlv2``: transformers detectors under their default hub ids
  (:data:`HUB_DEFAULTS`); any other name is taken as a local folder or hub id of a transformers
  Mask2Former / DETR-family / OWL model (:class:`~diffalign.eval.geneval.hf_detector.TransformersDetector`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

from PIL import Image

from diffalign.eval.geneval.rules import Detection

HUB_DEFAULTS: dict[str, str] = {
    "mask2former": "facebook/mask2former-swin-small-coco-instance",
    "detr": "facebook/detr-resnet-50",
    "owlv2": "google/owlv2-base-patch16-ensemble",
}
"""Short names of transformers detectors -> hub ids. ``mask2former`` is GenEval's architecture and
size (Swin-S, COCO instance segmentation) but Meta's weights, not mmdet's checkpoint."""


class Detector(ABC):
    """One image in, detections out. Subclasses set :attr:`name` and implement :meth:`detect`."""

    #: label recorded with every result ("shapes", "mask2former:facebook/...", ...).
    name: str = ""
    #: True when detections carry their own ``color`` (then no colour classifier is needed).
    provides_colors: bool = False

    @abstractmethod
    def detect(self, image: Image.Image) -> list[Detection]:
        """Detections in one RGB PIL image (any order; scores unthresholded)."""

    def detect_many(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        """:meth:`detect` over several images (subclasses may batch)."""
        return [self.detect(image) for image in images]

    def describe(self) -> dict[str, Any]:
        """JSON-ready description recorded in ``summary.json``."""
        return {"name": self.name, "provides_colors": self.provides_colors}


class ShapesDetector(Detector):
    """The shapes world's pixel detector (:func:`diffalign.shapes.detect.detect_shapes`); ``options``
    go to it (``foreground_threshold``, ``min_area_fraction``)."""

    name = "shapes"
    provides_colors = True

    def __init__(self, **options: Any):
        self.options = options

    def detect(self, image: Image.Image) -> list[Detection]:
        from diffalign.shapes.detect import detect_shapes

        return detect_shapes(image, **self.options)


def load_detector(name: str | Detector, **options: Any) -> Detector:
    """A detector by short name (``shapes``, ``mask2former``, ``detr``, ``owlv2``) or by the local
    folder / hub id of a transformers detection model; ``options`` go to its constructor. A
    :class:`Detector` instance passes through."""
    if isinstance(name, Detector):
        return name
    if name == "shapes":
        return ShapesDetector(**options)
    from diffalign.eval.geneval.hf_detector import TransformersDetector

    if name in HUB_DEFAULTS:
        return TransformersDetector(HUB_DEFAULTS[name], **options)
    return TransformersDetector(name, **options)
