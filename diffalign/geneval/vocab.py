"""GenEval's fixed vocabulary: task tags, colour names, relations, the 80 object names, and the
colour classifier's prompt templates (djghosh13/geneval, ``evaluation/`` and ``prompts/``)."""
from __future__ import annotations

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
"""The six task tags, in GenEval's order."""

COLOR_NAMES: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
"""The ten colours the colour classifier chooses from, in GenEval's order (also the order in which
failure reasons list them)."""

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
"""Relative-position relations (the image y axis points down)."""

RENAMED_CLASSES: dict[str, str] = {"mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard"}
"""COCO class names that GenEval's prompts spell differently; detectors trained on COCO (mmdet,
DETR, Mask2Former) output the keys, GenEval's metadata uses the values."""

OBJECT_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock",
    "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
"""The 80 COCO classes in mmdet's index order, with GenEval's three renames applied."""

COLOR_TEMPLATES: tuple[str, ...] = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")
"""The colour classifier's zero-shot templates; ``{c}`` is a colour, ``{cls}`` the object class."""


def geneval_class_name(label: str) -> str:
    """A detector's class label in GenEval's spelling: lower case, surrounding spaces and
    underscores normalised, and the three renamed COCO classes mapped (``mouse`` -> ``computer mouse``)."""
    name = " ".join(label.replace("_", " ").split()).lower()
    return RENAMED_CLASSES.get(name, name)
