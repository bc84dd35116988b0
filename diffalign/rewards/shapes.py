"""The shapes judge as a reward: 1.0 when the image satisfies its GenEval row, else 0.0.

Needs ``metadata``: one GenEval-format row per image (``diffalign.shapes.prompts``). This is the
``geneval`` reward with the shapes world's pixel detector and its own colour names
(:class:`~diffalign.rewards.geneval.GenEvalReward`); ``rule_options`` are GenEval's rule constants.
``partial=True``: partial credit in [0, 1] instead (``GenEvalReward``'s option), a denser reward for
Flow-GRPO / DDPO groups. The last verdicts' reasons are kept in ``last_reasons`` for logging.
"""
from __future__ import annotations

from typing import Any

from diffalign.rewards.geneval import GenEvalReward


class ShapesJudgeReward(GenEvalReward):
    """GenEval correctness of shapes-world images (non-differentiable, 0/1; ``partial=True``: partial credit)."""

    def __init__(self, partial: bool = False, **rule_options: Any):
        super().__init__(detector="shapes", color_classifier="detector", partial=partial, **rule_options)
