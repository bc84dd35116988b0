"""The shapes judge as a reward: 1.0 when the image satisfies its GenEval row, else 0.0.

Needs ``metadata``: one GenEval-format row per image (``diffalign.shapes.prompts``). The verdict is
:func:`diffalign.shapes.judge.judge_image` (pixel detector + GenEval rules); ``rule_options`` go to
it unchanged. The last verdicts' reasons are kept in ``last_reasons`` for logging.
"""
from __future__ import annotations

from typing import Any

import torch

from diffalign.rewards.base import Reward
from diffalign.utils.images import batch_to_uint8


class ShapesJudgeReward(Reward):
    """GenEval correctness of shapes-world images (non-differentiable, 0/1)."""

    requires_prompt = False
    requires_metadata = True
    native_range = (0.0, 1.0)

    def __init__(self, **rule_options: Any):
        super().__init__()
        self.rule_options = rule_options
        self.last_reasons: list[str] = []

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        from diffalign.shapes.judge import judge_image
        from diffalign.shapes.prompts import validate_row

        verdicts = []
        for i, (image, row) in enumerate(zip(batch_to_uint8(samples), metadata)):
            verdicts.append(judge_image(image, validate_row(row, f"metadata[{i}]"), **self.rule_options))
        self.last_reasons = [reason for _, reason in verdicts]
        return torch.tensor([1.0 if ok else 0.0 for ok, _ in verdicts], device=samples.device)
