"""Standard-normal draws from one generator or from one generator per batch row.

A list of generators (one per row of dim 0, as diffusers' pipelines accept) makes every sample's
draws independent of the batch it is drawn in: W processes with batch ``b`` then draw what one
process with batch ``W x b`` draws (the trainers key each sample's generator by its place in the
batch over all processes).
"""
from __future__ import annotations

import torch


def randn(shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """``torch.randn(shape)`` drawn on the generator's device (``device`` without one), moved to ``device``.
    ``generator`` may be a list with one generator per row of ``shape[0]``."""
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        rows = [torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=dtype).to(device) for g in generator]
        return torch.cat(rows) if rows else torch.empty(shape, device=device, dtype=dtype)
    draw_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


__all__ = ["randn"]
