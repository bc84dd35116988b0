"""bench/video_loss_split.py: the object / background split of a v-loss, and the latent object mask."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import diffalign  # noqa: F401  (compat shim first)
from diffalign.shapes.vocab import BACKGROUND

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import video_loss_split  # noqa: E402

sys.path.pop(0)


def test_split_errors_by_hand():
    squared = torch.tensor([[[[1.0, 3.0], [0.5, 0.5]]]])  # [B, F, h, w]
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    out = video_loss_split.split_errors(squared, mask)
    assert out["object_error"] == pytest.approx(2.0) and out["background_error"] == pytest.approx(0.5)
    assert out["ratio"] == pytest.approx(4.0) and out["object_share_of_grid"] == pytest.approx(0.5)
    assert out["object_share_of_loss"] == pytest.approx(4.0 / 5.0) and out["loss"] == pytest.approx(5.0 / 4.0)
    with pytest.raises(ValueError, match="both object and background"):
        video_loss_split.split_errors(squared, torch.ones_like(mask))


def test_latent_object_mask_follows_the_causal_2x_video_vae():
    clips = np.tile(np.array(BACKGROUND, dtype=np.uint8), (1, 5, 8, 8, 1))  # [B=1, T=5, 8, 8, 3]
    clips[0, 0, 0:2, 0:2] = (255, 0, 0)  # frame 0 -> latent frame 0, top-left latent pixel
    clips[0, 3, 6, 7] = (0, 0, 255)  # frame 3 -> latent frame 2 (frames 3-4), bottom-right latent pixel
    mask = video_loss_split.latent_object_mask(clips)
    assert mask.shape == (1, 3, 4, 4)
    expected = torch.zeros(1, 3, 4, 4)
    expected[0, 0, 0, 0] = 1
    expected[0, 2, 3, 3] = 1
    assert torch.equal(mask, expected)
