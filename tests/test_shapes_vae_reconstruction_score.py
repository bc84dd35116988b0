"""``vae_reconstruction_score``: the temporal judge on a VAE's reconstructions of ground-truth clips,
the ceiling a video VAE puts on any denoiser trained in its latent space (docs/video.md)."""
from types import SimpleNamespace

import pytest
import torch

import diffalign  # noqa: F401  (compat shim first)
from diffalign.shapes.pretraining.evaluate import vae_reconstruction_score


class _StubVAE(torch.nn.Module):
    """encode/decode with the diffusers call shapes: identity, or a decoder that paints a flat grey."""

    def __init__(self, blank: bool):
        super().__init__()
        self.blank = blank
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: x))

    def decode(self, z):
        return SimpleNamespace(sample=torch.zeros_like(z) if self.blank else z)


@pytest.mark.slow  # ~2 s: the moving-shapes prompt split and 10 judged clips
def test_identity_vae_scores_one_and_a_blank_decoder_scores_zero():
    exact = vae_reconstruction_score(_StubVAE(blank=False), per_category=2, seed=3)
    assert exact["score"] == pytest.approx(1.0) and exact["overall"] == pytest.approx(1.0)
    assert set(exact["categories"]) == {"motion", "two_motion", "constant_count", "appearance", "passing"}
    blank = vae_reconstruction_score(_StubVAE(blank=True), per_category=2, seed=3)
    assert blank["score"] == pytest.approx(0.0) and blank["overall"] == 0.0
