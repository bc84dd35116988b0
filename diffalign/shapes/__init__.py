"""The shapes world: a synthetic text-to-image task whose correctness is known exactly.

- vocabulary (:mod:`.vocab`): ``SHAPES``, ``COLORS`` (GenEval's ten names -> RGB), ``BACKGROUND``,
  ``CATEGORIES`` (GenEval's six tags), ``RELATIONS``;
- scenes (:mod:`.scene`): ``ShapeObject``, ``Scene``, ``scene_for_row(row, rng)``;
- rendering (:mod:`.render`): ``render_scene(scene, size=64)``;
- prompts (:mod:`.prompts`): ``sample_rows``, ``split_rows``, ``prompt_split``,
  ``write_metadata`` / ``read_metadata`` (GenEval's metadata jsonl);
- the judge (:mod:`.judge`): ``judge_image``, ``judge_batch``, ``summarize``, built from the
  pixel detector (:mod:`.detect`, ``detect_shapes``) and the pure GenEval rule engine
  (:mod:`.rules`, ``evaluate(row, detections)`` over ``Detection(label, box, score, color)``);
- ``perturb``: blur / noise / colour shift, to test the judge's robustness;
- near misses (:mod:`.negatives`): ``near_miss_row`` (a row changed by one mistake: count,
  colour, swapped colours, relation, shape, missing object) and ``with_distractor``, for
  known-answer tests and synthetic preference pairs;
- the moving-shapes world (:mod:`.video`): ``video_prompts(split)``, ``render_video(metadata,
  num_frames=, size=, seed=)`` (uint8 [T, H, W, 3]) and the temporal judge ``judge_video(frames,
  metadata)`` (``correct``, ``score``, per-window ``segments``, ``temporal`` quality figures);
- ``pretrained_path("sd" | "sd3" | "flux2" | "cogvideox" | "wan")``: the shipped pretrained shapes pipelines
  (``cogvideox`` and ``wan``: the moving-shapes text-to-video pipelines).
"""
from __future__ import annotations

import os

from diffalign.shapes.detect import detect_shapes
from diffalign.shapes.judge import judge_batch, judge_image, summarize
from diffalign.shapes.negatives import near_miss_kinds, near_miss_row, with_distractor
from diffalign.shapes.perturb import perturb
from diffalign.shapes.prompts import (
    all_rows,
    prompt_split,
    read_metadata,
    sample_rows,
    split_rows,
    validate_row,
    write_metadata,
)
from diffalign.shapes.render import render_scene
from diffalign.shapes.rules import Detection, evaluate
from diffalign.shapes.scene import Scene, ShapeObject, scene_detections, scene_for_row
from diffalign.shapes.video import VIDEO_CATEGORIES, judge_video, render_video, summarize_video, video_prompts
from diffalign.shapes.vocab import BACKGROUND, CATEGORIES, COLOR_NAMES, COLORS, RELATIONS, SHAPES

PRETRAINED_FAMILIES = ("sd", "sd3", "flux2", "cogvideox", "wan")


def pretrained_path(family: str) -> str:
    """Folder of the shipped pretrained shapes pipeline ``shapes-<family>`` (``"sd"``, ``"sd3"``, ``"flux2"`` or the
    moving-shapes video pipelines ``"cogvideox"`` and ``"wan"``),
    loadable with ``DiffusionPipeline.from_pretrained``. Raises ``FileNotFoundError`` if absent."""
    from diffalign.pipelines.models import embedded_path

    if family not in PRETRAINED_FAMILIES:
        raise ValueError(f"unknown pretrained family {family!r}; expected one of {', '.join(PRETRAINED_FAMILIES)}")
    return embedded_path(f"shapes-{family}")


def render_row(row, rng=None, size: int = 64):
    """Render a random scene satisfying ``row``: uint8 array [size, size, 3]."""
    return render_scene(scene_for_row(row, rng), size=size)


__all__ = [
    "BACKGROUND",
    "Detection",
    "CATEGORIES",
    "COLORS",
    "COLOR_NAMES",
    "RELATIONS",
    "SHAPES",
    "Scene",
    "ShapeObject",
    "VIDEO_CATEGORIES",
    "all_rows",
    "detect_shapes",
    "evaluate",
    "judge_batch",
    "judge_image",
    "judge_video",
    "near_miss_kinds",
    "near_miss_row",
    "perturb",
    "pretrained_path",
    "prompt_split",
    "read_metadata",
    "render_row",
    "render_scene",
    "render_video",
    "sample_rows",
    "scene_detections",
    "scene_for_row",
    "summarize",
    "summarize_video",
    "split_rows",
    "validate_row",
    "video_prompts",
    "with_distractor",
    "write_metadata",
]
