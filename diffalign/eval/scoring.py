"""Batched scoring of generated images with a reward.

Rewards named on the command line (``NAME`` or ``NAME:key=value,...``, e.g. ``hpsv2.1:path=/models/hps``)
are built with :func:`diffalign.rewards.load`, which reads that form.
"""
from __future__ import annotations

from typing import Mapping, Sequence


def score_images(
    reward,
    images: Sequence,
    prompts: Sequence[str],
    metadata: Sequence[Mapping] | None = None,
    batch_size: int = 16,
) -> list[float]:
    """``reward`` over PIL images in batches (all images of a batch must share a size); the
    metadata is passed only to rewards that read it."""
    import torch

    from diffalign.rewards import as_samples

    device = next((p.device for p in reward.parameters()), None) or torch.device("cpu")
    scores: list[float] = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        meta = list(metadata[start : start + batch_size]) if (metadata is not None and reward.requires_metadata) else None
        with torch.no_grad():
            pixels = as_samples(chunk, reward.modality).to(device)
            out = reward(pixels, list(prompts[start : start + batch_size]), meta)
        scores.extend(float(v) for v in out.detach().float().cpu())
    return scores
