"""Turning data batches into what the network trains on: VAE latents and text conditioning.

``encode_batch(adapter, batch, generator)`` maps any preference batch (pairs, unpaired, ranked,
video pairs) to a flat dict of batch-first tensors:

- latents: ``w``/``l`` (pairs; also whole-video pairs), ``x`` (unpaired ``[B,...]``, ranked
  ``[B,K,...]``), ``v0``/``v1`` (segment-labelled video pairs);
- conditioning: ``cond.<key>`` from the captions, and ``cond_w.<key>``/``cond_l.<key>`` when the
  data has per-role captions (DCPO/TDPO);
- labels: ``soft_labels``, ``is_tie``, ``desirable``, ``scores``, ``segment_labels``.

The same dict is what the latent cache stores per example, so training from the cache and from
raw images run the same code.
"""
from __future__ import annotations

from typing import Any

import torch

from diffalign.data.examples import PairBatch, RankedBatch, UnpairedBatch, VideoPairBatch
from diffalign.pipelines import PipelineAdapter, PromptEmbeds


def conditioning(encoded: dict[str, torch.Tensor], prefix: str = "cond") -> PromptEmbeds:
    """The ``PromptEmbeds`` stored under ``prefix.*`` keys."""
    start = prefix + "."
    return PromptEmbeds({k[len(start):]: v for k, v in encoded.items() if k.startswith(start)})


def _put_cond(out: dict[str, torch.Tensor], prefix: str, embeds: PromptEmbeds) -> None:
    for key, value in embeds.tensors.items():
        out[f"{prefix}.{key}"] = value


@torch.no_grad()
def encode_batch(
    adapter: PipelineAdapter, batch: Any, generator: torch.Generator | None = None,
    prompt_memo: dict[str, PromptEmbeds] | None = None,
) -> dict[str, torch.Tensor]:
    """Latents + conditioning + labels of one data batch (see the module docstring)."""
    device = adapter.device

    def latents(pixels: torch.Tensor) -> torch.Tensor:
        return adapter.encode_pixels(pixels.to(device), generator=generator)

    out: dict[str, torch.Tensor] = {}
    _put_cond(out, "cond", adapter.encode_prompt_cached(list(batch.captions), prompt_memo))
    if isinstance(batch, PairBatch):
        out["w"], out["l"] = latents(batch.winners), latents(batch.losers)
        out["soft_labels"] = batch.soft_labels.float()
        out["is_tie"] = batch.is_tie
        if batch.captions_w is not None and batch.captions_l is not None:
            _put_cond(out, "cond_w", adapter.encode_prompt_cached(list(batch.captions_w), prompt_memo))
            _put_cond(out, "cond_l", adapter.encode_prompt_cached(list(batch.captions_l), prompt_memo))
    elif isinstance(batch, UnpairedBatch):
        out["x"] = latents(batch.images)
        out["desirable"] = batch.desirable
    elif isinstance(batch, RankedBatch):
        b, k = batch.images.shape[:2]
        flat = latents(batch.images.flatten(0, 1))
        out["x"] = flat.reshape(b, k, *flat.shape[1:])
        out["scores"] = batch.scores.float()
    elif isinstance(batch, VideoPairBatch):
        out["v0"], out["v1"] = latents(batch.videos_0), latents(batch.videos_1)
        out["segment_labels"] = batch.segment_labels
    else:
        raise TypeError(f"cannot encode a batch of type {type(batch).__name__}")
    return {k: v.detach() for k, v in out.items()}


def collate_encoded(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack per-example dicts (each tensor without the batch dim) into a batch."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def split_encoded(encoded: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The inverse of :func:`collate_encoded`."""
    n = next(iter(encoded.values())).shape[0]
    return [{k: v[i] for k, v in encoded.items()} for i in range(n)]
