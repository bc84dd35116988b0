"""The rating head shared by the LAION aesthetic predictor and ImageReward.

Both use the improved-aesthetic-predictor MLP: Linear(in, 1024), Dropout(0.2), Linear(1024, 128),
Dropout(0.2), Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1), with the ReLUs commented
out in the originals (an affine map in eval mode). The module layout (``layers`` = an 8-entry
Sequential) is kept so the original state-dict keys ``layers.{0,2,4,6,7}.{weight,bias}`` load as-is.
"""
from __future__ import annotations

import torch
from torch import nn


class RatingMLP(nn.Module):
    def __init__(self, in_features: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, in_features] -> [B]."""
        return self.layers(features).squeeze(-1)
