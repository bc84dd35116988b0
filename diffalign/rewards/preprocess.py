"""Differentiable image preprocessing for reward models, in torch only.

The originals preprocess with PIL / torchvision; these functions reproduce their geometry exactly and
their resampling closely (torch's antialiased bicubic uses PIL's kernel, a = -0.5), so gradients
reach the pixels:

- ``shortest_crop``: shortest side to ``size`` (long side ``int(size * long / short)``), bicubic,
  then a centre crop of ``size`` x ``size``. The crop offset is ``(H - size) // 2`` for Hugging Face
  processors (``crop_rounding="floor"``: PickScore, CLIP score) and ``round((H - size) / 2)`` for
  torchvision's ``CenterCrop`` (``"round"``: OpenAI CLIP, ImageReward, the LAION aesthetic predictor).
- ``letterbox``: longest side to ``size`` (other side ``round(side * size / longest)``), bicubic, then
  zero (black) padding to a square, ``pad // 2`` before and the rest after (HPSv2's ``ResizeMaxSize``).
- then ``(x - mean) / std``.

``clamp=True`` clips the resized pixels to [0, 1], as resampling a uint8 PIL image does; HPSv2 resizes
a float tensor and does not clip (``clamp=False``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

RESIZE_MODES = ("shortest_crop", "letterbox")
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
"""PIL resample codes found in ``preprocessor_config.json`` -> torch interpolation modes."""


def resize(x: torch.Tensor, height: int, width: int, interpolation: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """Antialiased resize of [..., C, H, W] (identity when the size already matches); ``antialias=False``
    is torchvision's tensor ``Resize`` before 0.17 (what AlignProp's reward functions ran)."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    if interpolation == "nearest":
        out = F.interpolate(flat, size=(height, width), mode="nearest")
    else:
        out = F.interpolate(flat, size=(height, width), mode=interpolation, align_corners=False, antialias=antialias)
    return out.reshape(*lead, *out.shape[-3:])


def shortest_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(new_h, new_w) with the shorter side ``size`` and the longer ``int(size * long / short)``."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def center_crop(x: torch.Tensor, size: int, rounding: str = "floor") -> torch.Tensor:
    """Centre ``size`` x ``size`` crop; ``rounding`` of the offset: ``"floor"`` (HF) or ``"round"`` (torchvision)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from a {h}x{w} image")
    if rounding == "floor":
        top, left = (h - size) // 2, (w - size) // 2
    elif rounding == "round":
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    else:
        raise ValueError(f"unknown crop rounding {rounding!r}; expected 'floor' or 'round'")
    return x[..., top : top + size, left : left + size]


def letterbox(x: torch.Tensor, size: int, interpolation: str = "bicubic", fill: float = 0.0) -> torch.Tensor:
    """Longest side to ``size``, then pad with ``fill`` to ``size`` x ``size``, centred (HPSv2)."""
    h, w = x.shape[-2:]
    if max(h, w) == size:
        nh, nw = h, w
    else:
        scale = size / float(max(h, w))
        nh, nw = round(h * scale), round(w * scale)
        x = resize(x, nh, nw, interpolation)
    pad_h, pad_w = size - nh, size - nw
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill)


@dataclass(frozen=True)
class ImagePreprocess:
    """One reward model's preprocessing: geometry, resampling and normalisation."""

    size: int = 224
    resize_mode: str = "shortest_crop"
    interpolation: str = "bicubic"
    crop_rounding: str = "floor"
    clamp: bool = True
    #: False: plain interpolation, as torchvision < 0.17 resized tensors (AlignProp's ``Resize(224)``).
    antialias: bool = True
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize_mode {self.resize_mode!r}; expected one of {', '.join(RESIZE_MODES)}")
        if self.interpolation not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(f"unsupported interpolation {self.interpolation!r}")

    def geometry(self, x: torch.Tensor) -> torch.Tensor:
        """Resize + crop / letterbox of [..., 3, H, W] pixels in [0, 1] (no normalisation)."""
        if self.resize_mode == "letterbox":
            if not self.antialias:
                raise ValueError("letterbox resizing is always antialiased (as HPSv2's ResizeMaxSize)")
            x = letterbox(x, self.size, self.interpolation)
        else:
            h, w = x.shape[-2:]
            x = resize(x, *shortest_side_size(h, w, self.size), self.interpolation, self.antialias)
            x = center_crop(x, self.size, self.crop_rounding)
        return x.clamp(0.0, 1.0) if self.clamp else x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self.geometry(x.float())
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std

    @classmethod
    def from_hf_config(cls, config: dict, default_size: int = 224) -> "ImagePreprocess":
        """From a Hugging Face ``preprocessor_config.json`` dict (CLIPImageProcessor keys)."""
        size = config.get("size", default_size)
        if isinstance(size, dict):
            size = size.get("shortest_edge", size.get("height", default_size))
        crop = config.get("crop_size", size)
        if isinstance(crop, dict):
            crop = crop.get("height", size)
        if crop != size:
            raise ValueError(f"preprocessor config resizes to {size} but crops {crop}; only equal sizes are supported")
        resample = config.get("resample", 3)
        if resample not in _PIL_RESAMPLE:
            raise ValueError(f"unsupported resample code {resample} in the preprocessor config")
        return cls(
            size=int(size),
            resize_mode="shortest_crop",
            interpolation=_PIL_RESAMPLE[resample],
            crop_rounding="floor",
            clamp=True,
            mean=tuple(config.get("image_mean", OPENAI_CLIP_MEAN)),
            std=tuple(config.get("image_std", OPENAI_CLIP_STD)),
        )

    @classmethod
    def from_hf_folder(cls, folder: str, default_size: int = 224) -> "ImagePreprocess":
        """Read ``preprocessor_config.json`` from a model folder; OpenAI CLIP defaults at ``default_size`` if absent."""
        path = os.path.join(folder, "preprocessor_config.json")
        if not os.path.isfile(path):
            return cls(size=default_size)
        with open(path, encoding="utf-8") as f:
            try:
                return cls.from_hf_config(json.load(f), default_size)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from e
