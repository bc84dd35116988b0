"""GenEval as a reward: 1.0 when the image satisfies its GenEval row, else 0.0 (non-differentiable).

Needs ``metadata``: one GenEval row per image. The verdict is
:class:`diffalign.geneval.evaluator.GenEvalEvaluator`: ``detector`` (``auto``, ``shapes``,
``mask2former``, ``detr``, ``owlv2`` or a transformers model folder / hub id; ``auto`` picks ``shapes``
for shapes-world rows and ``mask2former`` otherwise, on the first batch, on that batch's device),
``color_classifier`` (``auto``, ``clip``, ``detector``), ``detector_options`` (e.g. ``{"device":
"cuda"}``), ``clip_options``, and GenEval's rule constants as keyword arguments (``threshold``,
``counting_threshold``, ``max_objects``, ``max_overlap``, ``position_margin``, ``position_cutoff``).
``partial=True`` scores partial credit instead of 0/1 (:func:`diffalign.geneval.rules.partial_credit`:
the mean over the row's count, colour, position and exclusion checks of how far each holds; 1.0 exactly
when the verdict is correct), a denser training reward for group-relative methods.
A transformers detector is a submodule, so ``reward.to(device)`` moves it. The last verdicts'
reasons are kept in ``last_reasons`` for logging.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from PIL import Image

from diffalign.rewards.base import Reward
from diffalign.utils.images import batch_to_uint8


class GenEvalReward(Reward):
    """GenEval correctness with a pluggable detector (0/1, or partial credit in [0, 1])."""

    requires_prompt = False
    requires_metadata = True
    native_range = (0.0, 1.0)

    def __init__(
        self,
        detector: str = "auto",
        color_classifier: str = "auto",
        detector_options: Mapping[str, Any] | None = None,
        clip_options: Mapping[str, Any] | None = None,
        partial: bool = False,
        **rule_options: Any,
    ):
        super().__init__()
        from diffalign.geneval.rules import RULE_DEFAULTS

        unknown = sorted(set(rule_options) - set(RULE_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown GenEval rule options {unknown}; known: {', '.join(RULE_DEFAULTS)}")
        self.settings = dict(color_classifier=color_classifier, rule_options=rule_options,
                             detector_options=dict(detector_options or {}), clip_options=clip_options)
        self.partial = bool(partial)
        self.evaluator = None
        if detector != "auto":
            self._build(detector)
        self.last_reasons: list[str] = []

    def _build(self, detector: str, device: torch.device | None = None) -> None:
        from diffalign.geneval.evaluator import GenEvalEvaluator

        options = dict(self.settings["detector_options"])
        if device is not None and detector != "shapes":
            options.setdefault("device", device)
        self.evaluator = GenEvalEvaluator(detector, self.settings["color_classifier"], self.settings["rule_options"],
                                          options, self.settings["clip_options"])
        model = getattr(self.evaluator.detector, "model", None)
        if isinstance(model, torch.nn.Module):
            self.detector_model = model.requires_grad_(False)

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        from diffalign.geneval.evaluator import auto_detector
        from diffalign.geneval.metadata import validate_row

        rows = [validate_row(row, f"metadata[{i}]") for i, row in enumerate(metadata)]
        if self.evaluator is None:
            self._build(auto_detector(rows), samples.device)
        images = [Image.fromarray(a) for a in batch_to_uint8(samples)]
        verdicts = self.evaluator.evaluate(images, rows, partial=self.partial)
        self.last_reasons = [v["reason"] for v in verdicts]
        values = [v["credit"] if self.partial else (1.0 if v["correct"] else 0.0) for v in verdicts]
        return torch.tensor(values, device=samples.device)

    @property
    def protocol_label(self) -> str:
        """"GenEval protocol, detector=NAME" (``auto`` until the first batch decided)."""
        return self.evaluator.label if self.evaluator is not None else "GenEval protocol, detector=auto"
