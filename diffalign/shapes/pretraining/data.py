"""Endless streams of freshly rendered shapes-world training batches (images, or moving-shapes
clips for the video family) and a pool of their latents encoded once."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffalign.shapes.prompts import sample_rows
from diffalign.shapes.render import render_scene
from diffalign.shapes.layouts import canonical_scene_for_row
from diffalign.shapes.scene import scene_for_row

LAYOUTS = {"random": scene_for_row, "canonical": canonical_scene_for_row}


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
    layout: str = "random"
    """``"random"`` (:func:`~diffalign.shapes.scene.scene_for_row`) or ``"canonical"``
    (:func:`~diffalign.shapes.layouts.canonical_scene_for_row`)."""

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")

    def __call__(self, step: int) -> tuple[torch.Tensor, list[str]]:
        rng = np.random.default_rng([self.seed, step])
        rows = sample_rows(self.batch_size, seed=int(rng.integers(2**31)), split="train")
        place = LAYOUTS[self.layout]
        images = [render_scene(place(row, rng), size=self.size) for row in rows]
        drop = rng.random(len(rows)) < self.caption_dropout
        captions = ["" if d else row["prompt"] for row, d in zip(rows, drop)]
        return images_to_tensor(images), captions


def clips_to_tensor(clips: list[np.ndarray]) -> torch.Tensor:
    """uint8 [T, H, W, 3] clips -> float tensor [B, 3, T, H, W] in [-1, 1] (the CogVideoX VAE's input)."""
    batch = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float()
    return batch / 127.5 - 1.0


@dataclass
class VideoBatches:
    """Batch ``step`` of moving-shapes training clips: rows of the TRAIN split of
    :func:`~diffalign.shapes.video.video_prompts`, balanced over the five categories (a category
    uniformly, then one of its rows), one random clip per row (``render_video``, ``num_frames`` x
    ``size``), captions dropped to ``""`` with probability ``caption_dropout``. Deterministic in
    (``seed``, ``step``)."""

    batch_size: int
    seed: int = 0
    size: int = 32
    num_frames: int = 9
    caption_dropout: float = 0.1
    layout: str = "random"
    """``"random"`` (:func:`~diffalign.shapes.video.video_scene_for_row`) or ``"canonical"``
    (:func:`~diffalign.shapes.video.layouts.canonical_video_scene_for_row`)."""

    def __post_init__(self):
        from diffalign.shapes.video import VIDEO_CATEGORIES, video_prompts

        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        self.rows = [video_prompts("train", [tag]) for tag in VIDEO_CATEGORIES]

    def __call__(self, step: int) -> tuple[torch.Tensor, list[str]]:
        from diffalign.shapes.video import render_video

        rng = np.random.default_rng([self.seed, step])
        groups = rng.integers(len(self.rows), size=self.batch_size)
        rows = [self.rows[g][int(rng.integers(len(self.rows[g])))] for g in groups]
        if self.layout == "random":
            clips = [render_video(row, num_frames=self.num_frames, size=self.size, seed=int(rng.integers(2**31)))
                     for row in rows]
        else:
            from diffalign.shapes.video import render_frames
            from diffalign.shapes.video.layouts import canonical_video_scene_for_row

            clips = [render_frames(canonical_video_scene_for_row(row, int(rng.integers(2**31))), self.num_frames, self.size)
                     for row in rows]
        drop = rng.random(len(rows)) < self.caption_dropout
        captions = ["" if d else row["prompt"] for row, d in zip(rows, drop)]
        return clips_to_tensor(clips), captions


class LatentPool:
    """A fixed pool of ``size`` rendered TRAIN-split scenes encoded once by ``vae`` (posterior
    means, in pipeline latent space), served in random batches of ``batch_size`` with the same
    caption dropout as :class:`ShapesBatches`. Encoding once takes the VAE out of every training
    step (a third of a CPU step at these sizes). ``yields_latents`` tells the loop to skip encoding.
    Deterministic in (``seed``, ``step``)."""

    yields_latents = True

    def __init__(self, vae, size: int, batch_size: int, seed: int = 0, caption_dropout: float = 0.1,
                 encode_batch: int = 256, log=None, layout: str = "random", source=None):
        """``source``: the rendered batches to encode (default: :class:`ShapesBatches` of
        ``encode_batch`` scenes in ``layout``; e.g. :class:`VideoBatches` without caption dropout)."""
        from diffalign.shapes.pretraining.autoencoder import encode_latents

        self.batch_size, self.seed, self.caption_dropout = batch_size, seed, caption_dropout
        if source is None:
            source = ShapesBatches(encode_batch, seed=seed + 104729, caption_dropout=0.0, layout=layout)
        else:
            encode_batch = source.batch_size
        latents, captions = [], []
        for chunk in range((size + encode_batch - 1) // encode_batch):
            images, prompts = source(chunk)
            latents.append(encode_latents(vae, images, None, sample=False))
            captions.extend(prompts)
            if log is not None and chunk % 20 == 0:
                log({"stage": "latent_pool", "encoded": len(captions), "of": size})
        self.latents = torch.cat(latents)[:size].contiguous()
        self.captions = captions[:size]

    def __len__(self) -> int:
        return len(self.captions)

    def __call__(self, step: int) -> tuple[torch.Tensor, list[str]]:
        rng = np.random.default_rng([self.seed, step, 1])
        index = rng.choice(len(self), self.batch_size, replace=False)
        drop = rng.random(self.batch_size) < self.caption_dropout
        captions = ["" if d else self.captions[i] for i, d in zip(index, drop)]
        return self.latents[torch.from_numpy(index)], captions
