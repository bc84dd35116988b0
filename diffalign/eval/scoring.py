"""Rewards named on the command line and batched scoring of generated images.

A reward is written ``NAME`` or ``NAME:key=value,key=value`` (its constructor's options; values are
read as JSON when they parse, so ``dtype=float16`` stays a string and ``scale=0.5`` becomes a float),
e.g. ``hpsv2.1:path=/models/hps`` or ``geneval:detector=shapes``.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence


def parse_reward_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``"name:k=v,k2=v2"`` -> ``("name", {"k": v, "k2": v2})``."""
    name, _, rest = text.partition(":")
    if not name:
        raise ValueError(f"reward spec {text!r} has no name")
    options: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"reward spec {text!r}: option {part!r} is not key=value")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return name, options


def load_reward(spec: str, device: str | None = None, **defaults: Any):
    """The reward ``spec`` names (see :func:`parse_reward_spec`), on ``device``; ``defaults`` fill
    options the spec does not set."""
    import torch

    from diffalign.rewards import load

    name, options = parse_reward_spec(spec)
    reward = load(name, **{**defaults, **options})
    return reward.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))


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
