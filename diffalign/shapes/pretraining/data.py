"""An endless stream of freshly rendered shapes-world training batches."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffalign.shapes.prompts import sample_rows
from diffalign.shapes.render import render_scene
from diffalign.shapes.scene import scene_for_row


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 arrays -> float tensor [B, 3, H, W] in [-1, 1] (the VAE's input range)."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0


@dataclass
class ShapesBatches:
    """Batch ``step`` of training data: rows drawn from the TRAIN prompt split (balanced over the
    six categories), one random scene per row rendered at ``size``, and the row prompts as captions,
    each replaced by the empty string with probability ``caption_dropout`` (for classifier-free
    guidance). Deterministic in (``seed``, ``step``); every step sees new scenes."""

    batch_size: int
    seed: int = 0
    size: int = 64
    caption_dropout: float = 0.1

    def __call__(self, step: int) -> tuple[torch.Tensor, list[str]]:
        rng = np.random.default_rng([self.seed, step])
        rows = sample_rows(self.batch_size, seed=int(rng.integers(2**31)), split="train")
        images = [render_scene(scene_for_row(row, rng), size=self.size) for row in rows]
        drop = rng.random(len(rows)) < self.caption_dropout
        captions = ["" if d else row["prompt"] for row, d in zip(rows, drop)]
        return images_to_tensor(images), captions
