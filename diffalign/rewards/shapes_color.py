"""A differentiable colour-match reward for the shapes world (for reward-gradient trainers).

Every pixel is softly assigned to the shapes world's ten named colours and its grey background by a
softmax over negative squared CIELAB distances (``sigma`` in Delta-E units; the palette entries are
at least 43 Delta-E apart, so ``sigma=10`` is sharp on flat colours and smooth on edges and blends).
Averaging the assignments gives the soft area fraction ``f_k`` of each colour. With ``R`` the colours
the prompt asks for:

    presence = mean over c in R of f_c / (f_c + a)          (a = ``half_area``: 1 % of the image)
    wrong    = sum of f_k over named colours not in R
    reward   = presence - wrong / (wrong + sum_{c in R} f_c + a)

so the reward is in [-1, 1]: near 1 when every requested colour covers a visible area and no other
named colour appears, negative when the foreground is mostly the wrong colour. Gradients flow to
every pixel through the soft assignment, pulling object pixels toward the requested colours.

The requested colours come from the metadata rows (``include[*].color``) when given, otherwise from
colour words in the prompt. A sample that asks for no colour scores 0 with a zero gradient. The
reward checks which colours are present, not which shape wears which colour (``color_attr`` rows with
the two colours swapped still score high); the judge (``shapes`` reward) checks the binding.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

from diffalign.rewards.base import Reward
from diffalign.shapes.imageops import SRGB_TO_XYZ, WHITE_D65
from diffalign.shapes.vocab import BACKGROUND, COLOR_NAMES, COLORS

_LAB_DELTA = 6 / 29


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Differentiable sRGB in [0, 1] (channel axis -3) -> CIELAB (D65), same formulas as
    :func:`diffalign.shapes.imageops.srgb_to_lab`. Inputs are clamped to [0, 1] first."""
    c = rgb.clamp(0.0, 1.0)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    matrix = torch.as_tensor(SRGB_TO_XYZ / WHITE_D65[:, None], dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,...jhw->...ihw", matrix, linear)
    d = _LAB_DELTA
    # clamp inside the cube-root branch so its (unused) gradient stays finite below the knee
    f = torch.where(xyz > d**3, xyz.clamp(min=d**3) ** (1 / 3), xyz / (3 * d * d) + 4 / 29)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def _palette_lab(device, dtype) -> torch.Tensor:
    """[11, 3] Lab of the ten named colours (in ``COLOR_NAMES`` order) and the background (last)."""
    rgb = torch.tensor([COLORS[c] for c in COLOR_NAMES] + [BACKGROUND], dtype=torch.float64) / 255.0
    return srgb_to_lab(rgb.T[:, :, None]).squeeze(-1).T.to(device=device, dtype=dtype)


def soft_color_fractions(images: torch.Tensor, sigma: float = 10.0) -> torch.Tensor:
    """[B,3,H,W] in [0, 1] -> [B, 11] soft area fraction of each named colour and (last) the background."""
    lab = srgb_to_lab(images.float())
    palette = _palette_lab(images.device, lab.dtype)
    d2 = ((lab.unsqueeze(1) - palette[None, :, :, None, None]) ** 2).sum(2)  # [B, 11, H, W]
    return torch.softmax(-d2 / (2 * sigma**2), dim=1).mean((-2, -1))


def requested_colors(prompt: str, row: Mapping | None = None) -> list[str]:
    """Colours a sample asks for: ``include[*].color`` of its GenEval row, else colour words of the prompt."""
    if row is not None:
        clauses = row.get("include", []) if isinstance(row, Mapping) else []
        return list(dict.fromkeys(c["color"] for c in clauses if isinstance(c, Mapping) and c.get("color") in COLORS))
    words = re.findall(r"[a-z]+", prompt.lower())
    return list(dict.fromkeys(w for w in words if w in COLORS))


class ShapesColorReward(Reward):
    """Soft colour agreement between shapes-world images and their prompts (differentiable, [-1, 1])."""

    differentiable = True
    requires_prompt = False  # the metadata rows alone are enough
    native_range = (-1.0, 1.0)

    def __init__(self, sigma: float = 10.0, half_area: float = 0.01):
        super().__init__()
        if sigma <= 0 or half_area <= 0:
            raise ValueError(f"sigma and half_area must be positive, got {sigma} and {half_area}")
        self.sigma = float(sigma)
        self.half_area = float(half_area)

    def score(self, samples: torch.Tensor, prompts: Sequence[str], metadata) -> torch.Tensor:
        if metadata is None and not any(prompts):
            raise ValueError("shapes_color needs the prompts or the GenEval metadata rows of the samples")
        fractions = soft_color_fractions(samples, self.sigma)  # [B, 11]
        wanted = torch.zeros(fractions.shape[0], len(COLOR_NAMES), device=samples.device, dtype=fractions.dtype)
        for i, prompt in enumerate(prompts):
            for color in requested_colors(prompt, metadata[i] if metadata is not None else None):
                wanted[i, COLOR_NAMES.index(color)] = 1.0
        named = fractions[:, : len(COLOR_NAMES)]
        a = self.half_area
        n_wanted = wanted.sum(1)
        presence = (wanted * named / (named + a)).sum(1) / n_wanted.clamp(min=1)
        right = (wanted * named).sum(1)
        wrong = ((1 - wanted) * named).sum(1)
        reward = presence - wrong / (wrong + right + a)
        return torch.where(n_wanted > 0, reward, 0.0 * reward)
