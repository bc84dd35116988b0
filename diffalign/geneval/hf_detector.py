"""transformers object detectors as GenEval detectors (Mask2Former, the DETR family, OWL-ViT / OWLv2).

The model kind comes from the checkpoint's ``config.model_type``:

- ``mask2former`` / ``maskformer`` (instance segmentation, GenEval's own architecture): the processor's
  ``post_process_instance_segmentation`` with no score cut (Mask2Former's query x class top-k, score =
  class probability x mean mask probability), one binary mask per instance, the box is the mask's
  extent (mmdet's ``mask2bbox``: last pixel + 1) and the mask feeds the colour classifier's
  grey-background crop, as in GenEval;
- ``owlv2`` / ``owlvit`` (open vocabulary): queried with ``query_template`` over GenEval's 80 object
  names (or ``queries``); each box gets its best query;
- anything ``AutoModelForObjectDetection`` loads (DETR, Conditional/Deformable DETR, RT-DETR, YOLOS...):
  ``post_process_object_detection`` with no score cut (per query, the best non-background class).

Class names go through :func:`~diffalign.geneval.vocab.geneval_class_name` (COCO's ``mouse``,
``remote``, ``keyboard`` become GenEval's ``computer mouse``, ``tv remote``, ``computer keyboard``)
and then ``label_map``; DETR's unused ``N/A`` ids are dropped. Boxes are clipped to the image.
The thresholds GenEval uses (0.3 / 0.9) were tuned for mmdet's Mask2Former: scores of other
detectors are calibrated differently, which is why their results are labelled with the detector.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from diffalign.geneval.detectors import Detector
from diffalign.geneval.rules import Detection
from diffalign.geneval.vocab import OBJECT_NAMES, geneval_class_name
from diffalign.utils.dtypes import torch_dtype

INSTANCE_TYPES = ("mask2former", "maskformer")
ZERO_SHOT_TYPES = ("owlv2", "owlvit")
DROPPED_LABELS = ("n/a", "")


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Box (x0, y0, x1, y1) of a boolean [H, W] mask: first and last+1 occupied column and row."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(cols):
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height))


class TransformersDetector(Detector):
    """A transformers detection checkpoint (local folder or hub id) as a GenEval detector.

    ``device`` defaults to CUDA when available; ``dtype`` to float32 (inputs follow the model if it is
    moved later). ``queries`` (open-vocabulary
    models only) are the class names to look for, default GenEval's 80; ``query_template`` turns a
    class name into the text query. ``label_map`` renames classes after GenEval's renames.
    ``name`` overrides the result label (default ``<model_type>:<model>``).
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        queries: Sequence[str] | None = None,
        query_template: str = "a photo of a {}",
        label_map: Mapping[str, str] | None = None,
        batch_size: int = 8,
        name: str | None = None,
    ):
        from transformers import AutoConfig

        self.model_id = str(model)
        try:
            config = AutoConfig.from_pretrained(self.model_id)
        except (OSError, ValueError) as err:
            from diffalign.utils.hub import hub_help

            raise FileNotFoundError(hub_help(self.model_id, err)) from err
        self.model_type = config.model_type
        if self.model_type in INSTANCE_TYPES:
            self.kind = "instance"
        else:
            self.kind = "zero_shot" if self.model_type in ZERO_SHOT_TYPES else "detection"
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch_dtype(dtype) or torch.float32
        self.batch_size = int(batch_size)
        self.label_map = dict(label_map or {})
        self.query_template = query_template
        self.queries = list(queries) if queries is not None else list(OBJECT_NAMES)
        self.model, self.processor = self._load()
        self.model.to(device, dtype).eval().requires_grad_(False)
        self.class_names = self._class_names(config)
        self.name = name or f"{self.model_type}:{self.model_id}"

    def _load(self):
        from transformers import AutoImageProcessor, AutoProcessor

        if self.kind == "instance":
            from transformers import AutoModelForUniversalSegmentation as auto_model

            processor = AutoImageProcessor.from_pretrained(self.model_id)
        elif self.kind == "zero_shot":
            from transformers import AutoModelForZeroShotObjectDetection as auto_model

            processor = AutoProcessor.from_pretrained(self.model_id)
        else:
            from transformers import AutoModelForObjectDetection as auto_model

            processor = AutoImageProcessor.from_pretrained(self.model_id)
        try:
            model = auto_model.from_pretrained(self.model_id)
        except ValueError as err:
            raise ValueError(
                f"{self.model_id} (model_type {self.model_type!r}) is not a detection model transformers can load "
                f"with {auto_model.__name__}: {err}"
            ) from err
        return model, processor

    def _name(self, label: str) -> str | None:
        name = geneval_class_name(label)
        if name in DROPPED_LABELS:
            return None
        return self.label_map.get(name, name)

    def _class_names(self, config) -> dict[int, str | None]:
        if self.kind == "zero_shot":
            return {i: self._name(q) for i, q in enumerate(self.queries)}
        id2label = getattr(config, "id2label", None) or {}
        return {int(i): self._name(str(label)) for i, label in id2label.items()}

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "model": self.model_id, "model_type": self.model_type, "kind": self.kind}
        if self.kind == "zero_shot":
            out.update(query_template=self.query_template, queries=len(self.queries))
        return out

    # ------------------------------------------------------------------ inference
    def detect(self, image: Image.Image) -> list[Detection]:
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        out: list[list[Detection]] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            with torch.no_grad():
                out.extend(self._run(batch))
        return out

    def _inputs(self, batch: list[Image.Image]) -> dict:
        if self.kind == "zero_shot":
            texts = [[self.query_template.format(q) for q in self.queries] for _ in batch]
            inputs = self.processor(text=texts, images=batch, return_tensors="pt")
        else:
            inputs = self.processor(images=batch, return_tensors="pt")
        weight = next(self.model.parameters())  # follow the model wherever it was moved
        return {k: (v.to(weight.device, weight.dtype) if v.is_floating_point() else v.to(weight.device)) for k, v in inputs.items()}

    def _run(self, batch: list[Image.Image]) -> list[list[Detection]]:
        sizes = [(im.height, im.width) for im in batch]
        outputs = self.model(**self._inputs(batch))
        if self.kind == "instance":
            results = self.processor.post_process_instance_segmentation(
                outputs, threshold=0.0, target_sizes=sizes, return_binary_maps=True
            )
            return [self._instances(r, h, w) for r, (h, w) in zip(results, sizes)]
        if self.kind == "zero_shot":
            # OWLv2 pads images to a square at the bottom / right before resizing; OWL-ViT resizes directly
            targets = [(max(h, w),) * 2 for h, w in sizes] if self.model_type == "owlv2" else sizes
            results = self.processor.image_processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=targets)
        else:
            results = self.processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=sizes)
        return [self._boxes(r, h, w) for r, (h, w) in zip(results, sizes)]

    def _boxes(self, result: dict, height: int, width: int) -> list[Detection]:
        dets = []
        for score, label, box in zip(result["scores"].tolist(), result["labels"].tolist(), result["boxes"].float().tolist()):
            name = self.class_names.get(int(label))
            if name is not None:
                dets.append(Detection(name, _clip_box(box, width, height), float(score)))
        return dets

    def _instances(self, result: dict, height: int, width: int) -> list[Detection]:
        segments = result["segments_info"]
        if not segments:
            return []
        masks = result["segmentation"].bool().cpu().numpy()
        dets = []
        for i, seg in enumerate(segments):
            name = self.class_names.get(int(seg["label_id"]))
            if name is None:
                continue
            mask = masks[i]
            dets.append(Detection(name, _clip_box(mask_to_box(mask), width, height), float(seg["score"]), mask=mask))
        return dets
