"""``StepMoments``: the Gaussian of one stochastic sampler transition, for KL regularisers."""
from __future__ import annotations

from typing import NamedTuple

import torch


class StepMoments(NamedTuple):
    """Mean and std of the transition ``x_t -> x_next`` (fp32, ``std`` shaped [B, 1, ..., 1]).

    ``kl_scale`` is the std that reference implementations divide the squared mean difference by
    in their KL penalty ``mean((mean - mean_ref)^2) / (2 kl_scale^2)``: the transition std itself for
    DDIM and CPS, and the diffusion coefficient ``std_t`` *without* the ``sqrt(|dt|)`` factor for
    Flow-GRPO's SDE step (its KL is the exact Gaussian KL times ``|dt|``; Flow-GRPO issue #78).
    """

    mean: torch.Tensor
    std: torch.Tensor
    kl_scale: torch.Tensor


def gaussian_kl(moments: StepMoments, reference_mean: torch.Tensor) -> torch.Tensor:
    """Per-sample KL penalty [B] between two transitions that share the std:
    ``mean over non-batch dims of (mean - reference_mean)^2 / (2 kl_scale^2)`` (fp32)."""
    diff = (moments.mean - reference_mean.float()) ** 2 / (2 * moments.kl_scale**2)
    return diff.reshape(diff.shape[0], -1).mean(dim=1)


__all__ = ["StepMoments", "gaussian_kl"]
