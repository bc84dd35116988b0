"""Weighted sums of named rewards that keep every component.

``load("weighted_sum", rewards={"jpeg_compressibility": 1.0, "aes": {"reward": "aesthetic", "weight": 0.1,
"path": "..."}})``: each entry is a label mapped to a weight, or to a dict with ``weight`` (default 1),
``reward`` (the registry name; default the label) and that reward's own options. Entries may also
be already built :class:`Reward` objects (weight 1).

``composite.score_components(samples, prompts, metadata)`` returns ``(total, {label: scores})`` so
trainers can log each raw component next to the total (Flow-GRPO's ``multi_score`` pattern).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from diffalign.rewards.base import Reward
from diffalign.rewards.registry import load


def _build(label: str, spec: Any) -> tuple[Reward, float]:
    if isinstance(spec, Reward):
        return spec, 1.0
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return load(label), float(spec)
    if isinstance(spec, Mapping):
        options = dict(spec)
        weight = float(options.pop("weight", 1.0))
        reward = options.pop("reward", label)
        return load(reward, **options), weight
    raise TypeError(f"weighted_sum component {label!r}: expected a weight, an options dict or a Reward, got {type(spec).__name__}")


class WeightedSum(Reward):
    """``sum_k weight_k * reward_k(samples)``; differentiable only if every component is."""

    def __init__(self, rewards: Mapping[str, Any]):
        super().__init__()
        if not rewards:
            raise ValueError("weighted_sum needs at least one component reward")
        built = {label: _build(label, spec) for label, spec in rewards.items()}
        modalities = {label: r.modality for label, (r, _) in built.items()}
        if len(set(modalities.values())) > 1:
            raise ValueError(f"weighted_sum components score different modalities: {modalities}")
        self.components = nn.ModuleDict({label: r for label, (r, _) in built.items()})
        self.weights = {label: w for label, (_, w) in built.items()}
        parts = list(self.components.values())
        self.modality = parts[0].modality
        self.differentiable = all(r.differentiable for r in parts)
        self.requires_prompt = any(r.requires_prompt for r in parts)
        self.requires_metadata = any(r.requires_metadata for r in parts)
        self.higher_is_better = True
        bad = [label for label, r in self.components.items() if not r.higher_is_better and self.weights[label] > 0]
        if bad:
            raise ValueError(
                f"weighted_sum components {bad} are lower-is-better; give them a negative weight so the sum stays higher-is-better"
            )

    def score_components(self, samples, prompts=None, metadata=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, {label: raw component scores})``; each component is called through its own
        interface, so non-differentiable ones come back detached."""
        scores = {label: reward(samples, prompts, metadata) for label, reward in self.components.items()}
        total = sum(self.weights[label] * s for label, s in scores.items())
        return total, scores

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        return self.score_components(samples, prompts, metadata)[0]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weights={self.weights}"
