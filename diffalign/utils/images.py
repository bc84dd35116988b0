"""Image conversions and annotated grids for reports and demos."""
from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PASS_RGB = (40, 170, 70)
FAIL_RGB = (210, 50, 50)


def to_uint8(image) -> np.ndarray:
    """PIL image, uint8 HxWx3 array, or float tensor/array [3,H,W] / [H,W,3] in [0,1] -> uint8 HxWx3."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim != 3:
        raise ValueError(f"expected one image with 3 dims, got shape {arr.shape}")
    if arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def batch_to_uint8(images) -> list[np.ndarray]:
    """A batch (tensor [B,3,H,W] in [0,1], list of PIL/arrays) -> list of uint8 HxWx3 arrays."""
    if hasattr(images, "ndim") and getattr(images, "ndim") == 4:
        return [to_uint8(images[i]) for i in range(images.shape[0])]
    return [to_uint8(im) for im in images]


def make_grid(
    images: Sequence,
    captions: Sequence[str] | None = None,
    verdicts: Sequence[bool | None] | None = None,
    ncols: int = 8,
    scale: int = 2,
    caption_lines: int = 3,
    title: str | None = None,
) -> Image.Image:
    """Tile images into one PNG-ready picture.

    ``verdicts`` draws a green (True) or red (False) frame around each image; ``captions`` are
    wrapped under each tile. ``scale`` enlarges small images with nearest-neighbour sampling.
    """
    arrays = batch_to_uint8(images)
    if not arrays:
        raise ValueError("make_grid needs at least one image")
    font = ImageFont.load_default()
    h, w = arrays[0].shape[:2]
    tw, th = w * scale, h * scale
    border = 3
    char_w = 6
    line_h = 11
    cap_h = caption_lines * line_h + 2 if captions is not None else 0
    cell_w, cell_h = tw + 2 * border, th + 2 * border + cap_h
    ncols = max(1, min(ncols, len(arrays)))
    nrows = (len(arrays) + ncols - 1) // ncols
    title_h = line_h + 6 if title else 0
    canvas = Image.new("RGB", (ncols * cell_w, nrows * cell_h + title_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill=(0, 0, 0), font=font)
    for i, arr in enumerate(arrays):
        r, c = divmod(i, ncols)
        x0, y0 = c * cell_w, r * cell_h + title_h
        verdict = verdicts[i] if verdicts is not None else None
        if verdict is not None:
            draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + th + 2 * border - 1], fill=PASS_RGB if verdict else FAIL_RGB)
        tile = Image.fromarray(arr).resize((tw, th), Image.NEAREST)
        canvas.paste(tile, (x0 + border, y0 + border))
        if captions is not None:
            lines = textwrap.wrap(str(captions[i]), width=max(4, cell_w // char_w))[:caption_lines]
            for j, line in enumerate(lines):
                draw.text((x0 + 2, y0 + th + 2 * border + j * line_h), line, fill=(0, 0, 0), font=font)
    return canvas
