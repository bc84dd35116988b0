"""SmPO-Diffusion (Lu et al., ICML 2025; code JaydenLyh/SmPO): DPO with smoothed preference labels."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from diffalign.losses._common import (
    check_positive,
    check_probability,
    dpo_inside_term,
    dpo_stats,
    floats,
    per_sample_tensors,
)

__all__ = ["smpo_loss"]


def smpo_loss(
    policy_w: Tensor,
    policy_l: Tensor,
    ref_w: Tensor,
    ref_l: Tensor,
    soft_label: Tensor,
    beta: float = 5000.0,
    gamma: float = 10.0,
) -> tuple[Tensor, dict[str, float]]:
    """SmPO loss: Diffusion-DPO whose beta is scaled per pair by gamma·(2p - 1).

    u = -(beta/2)·gamma·(2p - 1)·((policy_w - ref_w) - (policy_l - ref_l)); loss = mean(-logsigmoid(u)).
    ``soft_label`` [B] is p, the probability that the winner is preferred (SmPO: the softmax of the
    min-max normalised PickScores of the two images, in [0.5, ~0.73]); p = 0.5 gives a pair no
    gradient, p < 0.5 pushes towards the "loser". gamma = 10 is the paper's sensitivity; p = 1 with
    gamma = 1 recovers Diffusion-DPO. The released code uses the first pair's p for its whole
    micro-batch (local batch 1); here each pair uses its own p.

    Forward passes: as Diffusion-DPO (policy with grad + reference without grad on winner and loser,
    shared timestep). SmPO's own noising is ReNoise inversion with the current policy (image-specific
    noise), which is a trainer concern; the loss only sees the resulting errors.

    Stats: the Diffusion-DPO stats (with u the scaled inside term) plus ``soft_label_mean`` and
    ``label_scale_mean`` (mean gamma·(2p - 1)).
    """
    beta = check_positive("beta", beta)
    gamma = check_positive("gamma", gamma)
    policy_w, policy_l, ref_w, ref_l, soft_label = per_sample_tensors(
        policy_w=policy_w, policy_l=policy_l, ref_w=ref_w, ref_l=ref_l, soft_label=soft_label
    )
    soft_label = soft_label.detach()
    check_probability("soft_label", soft_label)

    label_scale = gamma * (2.0 * soft_label - 1.0)
    inside = label_scale * dpo_inside_term(policy_w, policy_l, ref_w, ref_l, beta)
    loss = -F.logsigmoid(inside).mean()
    stats = dpo_stats(loss, inside, policy_w, policy_l, ref_w, ref_l)
    stats.update(soft_label_mean=soft_label.mean(), label_scale_mean=label_scale.mean())
    return loss, floats(stats)
