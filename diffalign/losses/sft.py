"""Supervised fine-tuning on preferred samples (the Diffusion-DPO paper's SFT baseline)."""
from __future__ import annotations

from torch import Tensor

from diffalign.losses._common import as_fp32, floats

__all__ = ["sft_loss"]


def sft_loss(policy_w: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Plain denoising loss on winners: loss = mean(policy_w).

    ``policy_w`` [B]: the policy's per-sample errors on the preferred image of each pair (chosen by
    the label; losers are not forwarded at all). No reference network. With equal-sized latents this
    equals the official ``--sft`` mse over all elements of the winner batch.
    Stats: ``loss``, ``policy_w_err`` (same value, kept for uniform logging).
    """
    policy_w = as_fp32("policy_w", policy_w)
    loss = policy_w.mean()
    return loss, floats({"loss": loss, "policy_w_err": loss})
