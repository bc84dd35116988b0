"""JPEG (in)compressibility, exactly as DDPO defines it.

Pixels in [0, 1] become uint8 by ``x * 255``, round, clamp to [0, 255]; each image is saved with PIL
as JPEG at quality 95 and its size in kB (bytes / 1000) is the incompressibility; compressibility is
its negative. Flow-GRPO divides compressibility by 500: pass ``scale=1/500`` for that.
Non-differentiable (see the docs for a learned proxy).
"""
from __future__ import annotations

import io

import torch
from PIL import Image

from diffalign.rewards.base import Reward

JPEG_QUALITY = 95


def jpeg_size_kb(images: torch.Tensor, quality: int = JPEG_QUALITY) -> torch.Tensor:
    """Size in kB (bytes / 1000) of each image of a float [B,3,H,W] batch saved as JPEG."""
    arrays = (images.detach() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    sizes = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        sizes.append(buffer.tell() / 1000)
    return torch.tensor(sizes, dtype=torch.float32, device=images.device)


class JpegIncompressibility(Reward):
    """JPEG size in kB: higher for detailed, noisy images."""

    requires_prompt = False
    native_range = (0.0, float("inf"))

    def __init__(self, scale: float = 1.0, quality: int = JPEG_QUALITY):
        super().__init__()
        self.scale = float(scale)
        self.quality = int(quality)

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        return self.scale * jpeg_size_kb(samples, self.quality)


class JpegCompressibility(JpegIncompressibility):
    """Minus the JPEG size in kB: higher for flat, simple images."""

    native_range = (float("-inf"), 0.0)

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        return -super().score(samples, prompts, metadata)
