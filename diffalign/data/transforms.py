"""Image/video preprocessing as in diffusers' DPO training scripts, made reproducible.

Pipeline (per image, or per frame of a video): resize so the image covers the target size
(for a square target: shortest side = ``resolution``; bilinear with antialiasing), crop to the
target (centre, or random with ``random_crop``), optionally flip horizontally (``random_flip``), and
return a float tensor in [0, 1] — ``[3, H, W]`` for an image, ``[F, 3, H, W]`` for a video — the
layout ``PipelineAdapter.encode_pixels`` takes. There is no [-1, 1] normalisation here; the
adapter does it.

Randomness is explicit: :meth:`Preprocess.sample_params` draws one :class:`AugmentParams` from a
generator, and every image of one example (winner and loser, all frames of both videos, all images
of a ranked list) is transformed with the same parameters, as diffusers does by cropping the
concatenated pair. :func:`augmentation_rng` derives the generator from ``(seed, epoch, index)``, so
an example gets the same augmentation whenever it is loaded again, in any worker or after a resume.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AugmentParams", "Preprocess", "augmentation_rng", "resolution_value"]


def resolution_value(value) -> int | tuple[int, int]:
    """The config value of ``data.resolution``: a square side (``512``) or a ``(height, width)`` given as
    ``[480, 720]`` or ``"480x720"`` (CogVideoX's 480x720, Wan's 480x832). A square ``[h, h]`` becomes
    ``h``, so it keys the latent cache as the plain side does. Raises ``ValueError`` on anything else."""
    given = value
    if isinstance(value, str):
        parts = value.lower().replace("x", " ").replace(",", " ").split()
        try:
            value = [int(p) for p in parts] if len(parts) > 1 else int(value)
        except ValueError:
            raise ValueError(f"resolution must be a side (512) or height x width (480x720), got {given!r}") from None
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            value = value[0]
        elif len(value) != 2:
            raise ValueError(f"resolution must be a side or [height, width], got {given!r}")
    sides = list(value) if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sides):
        raise ValueError(f"resolution must be a positive side or [height, width] of positive integers, got {given!r}")
    return sides[0] if len(sides) == 1 or sides[0] == sides[1] else (sides[0], sides[1])


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for example ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


@dataclass(frozen=True)
class AugmentParams:
    """Augmentation of one example: crop position as fractions of the free margin (0 = top/left,
    1 = bottom/right, 0.5 = centre) and whether to mirror horizontally."""

    crop_top: float = 0.5
    crop_left: float = 0.5
    flip: bool = False


@dataclass(frozen=True)
class Preprocess:
    """Resize + crop + flip settings.

    ``resolution``: output side (square) or ``(height, width)``. ``random_crop``: crop at a random
    position instead of the centre. ``random_flip``: mirror horizontally with probability 0.5.
    ``num_frames``: for videos, keep the first ``num_frames`` frames (a shorter video is an error);
    ``None`` keeps all.
    """

    resolution: int | tuple[int, int] = 512
    random_crop: bool = False
    random_flip: bool = False
    num_frames: int | None = None

    def __post_init__(self):
        size = self.size
        if any(not isinstance(s, int) or s <= 0 for s in size):
            raise ValueError(f"resolution must be a positive int or (height, width), got {self.resolution!r}")
        if self.num_frames is not None and (not isinstance(self.num_frames, int) or self.num_frames <= 0):
            raise ValueError(f"num_frames must be a positive int or None, got {self.num_frames!r}")

    @property
    def size(self) -> tuple[int, int]:
        """Output ``(height, width)``."""
        r = self.resolution
        if isinstance(r, int):
            return (r, r)
        if len(r) != 2:
            raise ValueError(f"resolution must be a positive int or (height, width), got {r!r}")
        return (r[0], r[1])

    @property
    def is_random(self) -> bool:
        """True when outputs depend on the augmentation draw (no latent caching then)."""
        return self.random_crop or self.random_flip

    def sample_params(self, rng: np.random.Generator | None) -> AugmentParams:
        """Draw one example's augmentation; with no randomness enabled (or no ``rng``) the centre crop."""
        if rng is None or not self.is_random:
            return AugmentParams()
        top, left = (float(rng.random()), float(rng.random())) if self.random_crop else (0.5, 0.5)
        flip = bool(rng.random() < 0.5) if self.random_flip else False
        return AugmentParams(crop_top=top, crop_left=left, flip=flip)

    def __call__(self, pixels: np.ndarray, params: AugmentParams = AugmentParams()) -> torch.Tensor:
        """``[H, W, 3]`` (image) or ``[F, H, W, 3]`` (video) uint8 / float-in-[0,1] array -> float32
        tensor ``[3, H', W']`` or ``[F', 3, H', W']`` in [0, 1]."""
        video = pixels.ndim == 4
        if video and self.num_frames is not None:
            if pixels.shape[0] < self.num_frames:
                raise ValueError(f"video has {pixels.shape[0]} frames, fewer than num_frames={self.num_frames}")
            pixels = pixels[: self.num_frames]
        frames = pixels if video else pixels[None]
        x = torch.from_numpy(np.require(frames, requirements=["C", "W"])).permute(0, 3, 1, 2)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        x = self._resize_crop(x, params)
        if params.flip:
            x = x.flip(-1)
        return x if video else x[0]

    def _resize_crop(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        th, tw = self.size
        h, w = x.shape[-2:]
        scale = max(th / h, tw / w)
        nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 1.0)
        top = int(round(params.crop_top * (nh - th)))
        left = int(round(params.crop_left * (nw - tw)))
        return x[..., top : top + th, left : left + tw].contiguous()
