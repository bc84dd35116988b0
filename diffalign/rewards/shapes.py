"""The shapes judge as a reward: 1.0 when the image satisfies its GenEval row, else 0.0.

Needs ``metadata``: one GenEval-format row per image (``diffalign.shapes.prompts``). This is the
``geneval`` reward with the shapes world's pixel detector and its own colour names
(:class:`~diffalign.rewards.geneval.GenEvalReward`); ``rule_options`` are GenEval's rule constants.
The last verdicts' reasons are kept in ``last_reasons`` for logging.
"""
from __future__ import annotations

from typing import Any

from diffalign.rewards.geneval import GenEvalReward


class ShapesJudgeReward(GenEvalReward):
    """GenEval correctness of shapes-world images (non-differentiable, 0/1)."""

    def __init__(self, **rule_options: Any):
        super().__init__(detector="shapes", color_classifier="detector", **rule_options)
