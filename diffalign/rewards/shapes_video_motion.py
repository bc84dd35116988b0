"""A differentiable motion reward for the moving-shapes world (VADER-style reward gradients on video).

For every include clause it can isolate, the reward follows the clause's object through the clip with a
soft mask and scores presence and direction of motion:

- mask ``m_t``: each pixel's soft assignment to the clause's colour (``shapes_color``'s softmax over
  negative CIELAB distances to the palette, ``sigma`` in Delta-E); a clause without a colour is
  isolable only when it is the row's only clause, and then ``m_t`` is the foreground (one minus the
  background's assignment);
- presence: mean over frames of ``area_t / (area_t + half_area)`` (``area_t``: the mask's mean);
- trajectory: the mask-weighted centroid per frame (side units, y down), its least-squares travel
  ``d`` over the clip (slope x (T - 1));
- motion term, with ``u`` the asked direction and ``s = travel_scale``: ``tanh(u.d / s) -
  tanh(|u_perp.d| / s)``; ``static``: ``-tanh(|d| / s)``; a clause that passes another (``passes``)
  moves in the pass direction and adds ``0.5 * (tanh(-u.(c_0 - g_0) / s) + tanh(u.(c_end - g_end) /
  s))`` -- starting behind the passed clause ``g`` and ending past it -- when ``g`` is isolable, the
  sum halved; no motion asked (``appearance``): 0.

- shape term (``shape_weight`` > 0; off by default): the judge's own template fit, made differentiable in the
  pixels. Per frame, the clause's mask is sharpened (``relu(m - shape_threshold) / (1 - shape_threshold)``, so
  the faint assignment of far-off pixels does not count), and the asked shape's template is placed and sized
  from that mask exactly as the shapes detector does (centroid, soft area; ``diffalign.shapes.detect``), held
  constant, and compared with it: ``fit = 1 - sum|m - template| / (sum m + sum template)``, the best of the
  detector's template blurs. The term is the mean fit over frames (0 in a frame where the mask covers under 2
  pixels). Only clauses that are a single object of a colour no other clause asks for get it.

``reward = mean over isolable clauses of (presence + motion + shape_weight * shape) / (2 + shape_weight)``
(in [-1, 1]). Rows with no isolable clause (``two_motion``'s uncoloured pairs) score 0 with a zero gradient:
train on the other categories. The judge (``shapes_video``) checks shape, count and straightness; without the
shape term this reward checks none of them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.shapes_color import _palette_lab, srgb_to_lab
from diffalign.shapes.detect import TEMPLATE_KERNELS, AREA_FACTOR, CENTROID_DROP
from diffalign.shapes.imageops import separable_filter
from diffalign.shapes.render import shape_coverage
from diffalign.shapes.vocab import COLOR_NAMES, SHAPES

_MOTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "static": (0.0, 0.0)}
_PASSES = {"left to right": "right", "right to left": "left", "top to bottom": "down", "bottom to top": "up"}


def soft_assignment(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """[..., 3, H, W] in [0, 1] -> [..., 11, H, W]: each pixel's soft assignment to the ten named
    colours and (last) the background."""
    lab = srgb_to_lab(frames.float())
    palette = _palette_lab(frames.device, lab.dtype)
    shape = [1] * (lab.dim() - 3) + [palette.shape[0], 3, 1, 1]
    d2 = ((lab.unsqueeze(-4) - palette.view(shape)) ** 2).sum(-3)
    return torch.softmax(-d2 / (2 * sigma**2), dim=-3)


def _isolable(include: Sequence[Mapping]) -> list[int]:
    return [k for k, c in enumerate(include) if c.get("color") in COLOR_NAMES or len(include) == 1]


def _single_objects(include: Sequence[Mapping]) -> list[int]:
    """Clauses whose mask holds one object: a count of 1, a named shape and a colour no other clause asks for."""
    colors = [c.get("color") for c in include]
    return [k for k, c in enumerate(include)
            if c.get("class") in SHAPES and int(c.get("count", 1)) == 1 and colors.count(c.get("color")) == 1]


MIN_SHAPE_PIXELS = 2.0
"""A frame whose sharpened mask covers less than this (pixels) has no object to fit: its shape term is 0."""


def template_fit(mask: torch.Tensor, shape: str) -> torch.Tensor:
    """The shapes detector's template fit of ``shape`` to a soft mask [H, W] (differentiable in the mask; the
    template, placed at the mask's centroid and sized from its area, is a constant): the best over the
    detector's template blurs, 0 for an empty mask."""
    m = mask.detach().double().cpu().numpy()
    area = float(m.sum())
    if area < MIN_SHAPE_PIXELS:
        return mask.sum() * 0.0
    h, w = m.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    mx, my = float((m * xs).sum() / area), float((m * ys).sum() / area)
    size = float(np.sqrt(area / AREA_FACTOR[shape]))
    cy = my - CENTROID_DROP[shape] * size
    sharp = shape_coverage(shape, (mx - size / 2, cy - size / 2, mx + size / 2, cy + size / 2), h, w)
    templates = [separable_filter(sharp, k) for k in TEMPLATE_KERNELS]
    fits = [1.0 - np.abs(m - t).sum() / (area + t.sum()) for t in templates]
    t = torch.as_tensor(templates[int(np.argmax(fits))], dtype=mask.dtype, device=mask.device)
    return 1.0 - (mask - t).abs().sum() / (mask.sum() + t.sum())


class ShapesVideoMotionReward(Reward):
    """Soft presence and direction of motion of moving-shapes clips (differentiable, [-1, 1])."""

    modality = "video"
    differentiable = True
    requires_prompt = False
    requires_metadata = True
    native_range = (-1.0, 1.0)

    def __init__(self, sigma: float = 25.0, half_area: float = 0.01, travel_scale: float = 0.15,
                 shape_weight: float = 0.0, shape_threshold: float = 0.2):
        super().__init__()
        if sigma <= 0 or half_area <= 0 or travel_scale <= 0:
            raise ValueError(f"sigma, half_area and travel_scale must be positive, got {sigma}, {half_area}, {travel_scale}")
        if shape_weight < 0 or not 0 <= shape_threshold < 1:
            raise ValueError(f"shape_weight must be >= 0 and shape_threshold in [0, 1), got {shape_weight}, {shape_threshold}")
        self.sigma, self.half_area, self.travel_scale = float(sigma), float(half_area), float(travel_scale)
        self.shape_weight, self.shape_threshold = float(shape_weight), float(shape_threshold)

    def score(self, samples: torch.Tensor, prompts, metadata) -> torch.Tensor:
        if metadata is None:
            raise ValueError("shapes_video_motion needs the moving-shapes rows of the clips (metadata)")
        b, t, _, h, w = samples.shape
        if t < 2:
            raise ValueError(f"shapes_video_motion needs at least 2 frames per clip, got {t}")
        assign = soft_assignment(samples, self.sigma)  # [B, T, 11, H, W]
        ys = (torch.arange(h, device=samples.device, dtype=assign.dtype) + 0.5) / h
        xs = (torch.arange(w, device=samples.device, dtype=assign.dtype) + 0.5) / w
        times = torch.arange(t, device=samples.device, dtype=assign.dtype)
        times = times - times.mean()
        s = self.travel_scale
        out = []
        for i, row in enumerate(metadata):
            include = list(row.get("include", [])) if isinstance(row, Mapping) else []
            keep = _isolable(include)
            if not keep:
                out.append(0.0 * samples[i].sum())
                continue
            tracks, shapes = {}, {}
            single = _single_objects(include) if self.shape_weight > 0 else []
            for k in keep:
                color = include[k].get("color")
                mask = assign[i, :, COLOR_NAMES.index(color)] if color in COLOR_NAMES else 1.0 - assign[i, :, -1]  # [T, H, W]
                mass = mask.sum((-2, -1)) + 1e-6
                cx = (mask.sum(-2) * xs).sum(-1) / mass
                cy = (mask.sum(-1) * ys).sum(-1) / mass
                centre = torch.stack([cx, cy], -1)  # [T, 2]
                travel = (times[:, None] * centre).sum(0) / (times**2).sum() * (t - 1)
                area = mask.mean((-2, -1))
                tracks[k] = (centre, travel, (area / (area + self.half_area)).mean())
                if k in single:
                    sharp = torch.relu(mask - self.shape_threshold) / (1.0 - self.shape_threshold)
                    shapes[k] = torch.stack([template_fit(frame, include[k]["class"]) for frame in sharp]).mean()
            terms = []
            for k in keep:
                clause, (centre, travel, presence) = include[k], tracks[k]
                passes = clause.get("passes")
                direction = _PASSES.get(passes[0]) if passes else clause.get("motion")
                if direction not in _MOTIONS:  # no motion asked (appearance rows): presence alone
                    motion = presence.new_zeros(())
                elif direction == "static":
                    motion = -torch.tanh(travel.norm() / s)
                else:
                    u = torch.tensor(_MOTIONS[direction], device=samples.device, dtype=travel.dtype)
                    along = (u * travel).sum()
                    across = (u.flip(0) * travel).sum().abs()
                    motion = torch.tanh(along / s) - torch.tanh(across / s)
                    if passes and int(passes[1]) in tracks:
                        other = tracks[int(passes[1])][0]
                        start = (u * (centre[0] - other[0])).sum()
                        end = (u * (centre[-1] - other[-1])).sum()
                        motion = motion + 0.5 * (torch.tanh(-start / s) + torch.tanh(end / s))
                        motion = motion / 2
                if self.shape_weight > 0:
                    shape = shapes.get(k, presence.new_zeros(()))
                    terms.append((presence + motion + self.shape_weight * shape) / (2 + self.shape_weight))
                else:
                    terms.append((presence + motion) / 2)
            out.append(torch.stack(terms).mean())
        return torch.stack(out)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", sigma={self.sigma}, half_area={self.half_area}, travel_scale={self.travel_scale}, "
                f"shape_weight={self.shape_weight}, shape_threshold={self.shape_threshold}")


__all__ = ["ShapesVideoMotionReward", "soft_assignment", "template_fit"]
