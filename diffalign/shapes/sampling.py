"""Generating images for shapes metadata rows with a plain diffusers pipeline."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from diffalign.pipelines.generation import SAMPLING_FILE, read_sampling_file  # noqa: F401 (SAMPLING_FILE re-exported)

FALLBACK_SAMPLING = {"num_inference_steps": 20, "guidance_scale": 5.0, "height": 64, "width": 64}


def sampling_defaults(pipeline_path: str) -> dict:
    """The sampling settings shipped with a shapes pipeline folder (steps, guidance, size)."""
    return {**FALLBACK_SAMPLING, **read_sampling_file(pipeline_path)}


def generate_for_rows(
    pipe,
    rows: Sequence[Mapping],
    *,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int = 0,
    batch_size: int = 64,
    height: int = 64,
    width: int = 64,
    **call_kwargs,
) -> list[np.ndarray]:
    """One image per row (uint8 HxWx3), batch by batch, reproducible for a given ``seed``;
    ``call_kwargs`` go to the pipeline call as they are (e.g. SD3's ``max_sequence_length``)."""
    import torch

    images: list[np.ndarray] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        generator = torch.Generator("cpu").manual_seed(seed * 1_000_003 + start)
        out = pipe(
            prompt=[r["prompt"] for r in chunk],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            generator=generator,
            output_type="np",
            **call_kwargs,
        ).images
        images.extend(np.clip(np.round(np.asarray(im) * 255.0), 0, 255).astype(np.uint8) for im in out)
    return images
