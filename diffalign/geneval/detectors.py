"""Object detectors behind one interface, for GenEval's rules.

A :class:`Detector` turns one RGB image into :class:`~diffalign.geneval.rules.Detection` s with
GenEval's class names, boxes in pixels and raw scores (the rule engine applies thresholds itself).
``name`` labels every result it produces. Built-ins (:func:`load_detector`):

- ``shapes``: the shapes world's exact pixel detector (names colours itself);
- ``mask2former``, ``detr``, ``owlv2``: transformers detectors under their default hub ids
  (:data:`HUB_DEFAULTS`); any other name is taken as a local folder or hub id of a transformers
  Mask2Former / DETR-family / OWL model (:class:`~diffalign.geneval.hf_detector.TransformersDetector`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

from PIL import Image

from diffalign.geneval.rules import Detection
from diffalign.registry import Registry

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


#: detectors by short name; others register with ``DETECTORS.register(name, cls)`` or the
#: ``diffalign.detectors`` entry-point group. The shapes world registers its exact pixel detector
#: here as a lazy path (``diffalign.shapes.detect:ShapesDetector``), so this layer never imports it.
DETECTORS: Registry[type[Detector]] = Registry(
    "detector",
    {
        "shapes": "diffalign.shapes.detect:ShapesDetector",
        # any transformers detection model by local folder or hub id (HUB_DEFAULTS' short names)
        "transformers": "diffalign.geneval.hf_detector:TransformersDetector",
    },
    entry_point_group="diffalign.detectors",
)


def load_detector(name: str | Detector, **options: Any) -> Detector:
    """A detector by short name (``shapes``, ``mask2former``, ``detr``, ``owlv2``) or by the local
    folder / hub id of a transformers detection model; ``options`` go to its constructor. A
    :class:`Detector` instance passes through."""
    if isinstance(name, Detector):
        return name
    if name in DETECTORS:
        return DETECTORS.get(name)(**options)
    transformers_detector = DETECTORS.get("transformers")
    return transformers_detector(HUB_DEFAULTS.get(name, name), **options)
