"""Per-transition losses of the online trainers: DDPO / Flow-GRPO's PPO surrogate and D3PO.

Inputs are per-sample log-probabilities [B] of one stored denoising transition (x_t -> x_{t-1}), as
returned by ``diffalign.samplers`` (per-element Gaussian log-density averaged over non-batch
dims). Trainers call these once per trained timestep and backward each before the next, so peak
memory does not grow with the number of trained timesteps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from diffalign.losses._common import check_positive, floats, implicit_accuracy, per_sample_tensors

__all__ = ["ppo_loss", "d3po_loss"]


def ppo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    clip_range: float = 1e-4,
    adv_clip_max: float = 5.0,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate as in DDPO (kvablack/ddpo-pytorch) and Flow-GRPO.

    A = clip(advantages, -adv_clip_max, adv_clip_max); ratio = exp(log_prob - old_log_prob);
    loss = mean(max(-A·ratio, -A·clip(ratio, 1 - clip_range, 1 + clip_range))).

    ``log_prob`` [B]: the current policy's log-prob of the stored transition (with grad);
    ``old_log_prob`` [B]: the behaviour policy's log-prob stored at sampling time; ``advantages`` [B]:
    per-sample advantages (per-prompt normalised rewards). Old log-probs and advantages are detached.
    The policy forward must use the same adapter/dtype/CFG path as the rollout, so the first update's
    ratio is exactly 1. No reference network (a KL term, when used, is added by the trainer).

    Stats: ``loss``, ``approx_kl`` = 0.5·mean((log_prob - old_log_prob)²), ``clipfrac`` =
    mean(|ratio - 1| > clip_range), ``clipfrac_gt_one`` = mean(ratio - 1 > clip_range),
    ``clipfrac_lt_one`` = mean(1 - ratio > clip_range), ``ratio_mean``, ``advantage_mean`` (after
    clipping).
    """
    clip_range = check_positive("clip_range", clip_range)
    adv_clip_max = check_positive("adv_clip_max", adv_clip_max)
    log_prob, old_log_prob, advantages = per_sample_tensors(
        log_prob=log_prob, old_log_prob=old_log_prob, advantages=advantages
    )
    old_log_prob = old_log_prob.detach()
    advantages = advantages.detach().clamp(-adv_clip_max, adv_clip_max)

    log_ratio = log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()

    ratio_d = ratio.detach()
    stats = {
        "loss": loss,
        "approx_kl": 0.5 * log_ratio.detach().pow(2).mean(),
        "clipfrac": ((ratio_d - 1.0).abs() > clip_range).float().mean(),
        "clipfrac_gt_one": (ratio_d - 1.0 > clip_range).float().mean(),
        "clipfrac_lt_one": (1.0 - ratio_d > clip_range).float().mean(),
        "ratio_mean": ratio_d.mean(),
        "advantage_mean": advantages.mean(),
    }
    return loss, floats(stats)


def d3po_loss(
    log_prob_w: Tensor,
    ref_log_prob_w: Tensor,
    log_prob_l: Tensor,
    ref_log_prob_l: Tensor,
    beta: float = 0.1,
    eps: float = 0.1,
) -> tuple[Tensor, dict[str, float]]:
    """D3PO (Yang et al., CVPR 2024; code yk7333/d3po ``scripts/train.py``) for one denoising step.

    rho_k = clamp(exp(log_prob_k - ref_log_prob_k), 1 - eps, 1 + eps) for k in {w, l};
    loss = mean(-logsigmoid(beta·log rho_w - beta·log rho_l)).
    The clamp is applied to the log-ratio in log space (same value and gradient, no overflow): once a
    ratio leaves [1 - eps, 1 + eps] its gradient is zero, a trust region around the reference.

    Forward passes: the two trajectories of a pair start from the same prompt and initial noise;
    for each trained step the policy (with grad) and the frozen reference (no grad, same CFG) give the
    log-prob of the stored transition of the preferred (``_w``) and dispreferred (``_l``) trajectory.
    Ties carry no gradient and are skipped by the trainer. All inputs [B]; reference log-probs detached.

    With the released beta = 0.1, eps = 0.1 the logit is at most ~0.02 in magnitude, so the loss
    stays near log 2 throughout training: monitor the reward, not the loss.

    Stats: ``loss``, ``implicit_acc`` (fraction with positive logit, ties 0.5), ``log_ratio_w`` and
    ``log_ratio_l`` (mean unclamped log-ratios), ``clampfrac_w`` and ``clampfrac_l`` (fraction of
    ratios outside the clamp range).
    """
    beta = check_positive("beta", beta)
    eps = check_positive("eps", eps)
    if eps >= 1.0:
        raise ValueError(f"eps must be < 1 (the ratio is clamped to [1 - eps, 1 + eps]), got {eps}")
    log_prob_w, ref_log_prob_w, log_prob_l, ref_log_prob_l = per_sample_tensors(
        log_prob_w=log_prob_w, ref_log_prob_w=ref_log_prob_w, log_prob_l=log_prob_l, ref_log_prob_l=ref_log_prob_l
    )
    low, high = math.log(1.0 - eps), math.log(1.0 + eps)
    log_ratio_w = log_prob_w - ref_log_prob_w.detach()
    log_ratio_l = log_prob_l - ref_log_prob_l.detach()
    logit = beta * log_ratio_w.clamp(low, high) - beta * log_ratio_l.clamp(low, high)
    loss = -F.logsigmoid(logit).mean()

    def outside(log_ratio: Tensor) -> Tensor:
        log_ratio = log_ratio.detach()
        return ((log_ratio < low) | (log_ratio > high)).float().mean()

    stats = {
        "loss": loss,
        "implicit_acc": implicit_accuracy(logit),
        "log_ratio_w": log_ratio_w.detach().mean(),
        "log_ratio_l": log_ratio_l.detach().mean(),
        "clampfrac_w": outside(log_ratio_w),
        "clampfrac_l": outside(log_ratio_l),
    }
    return loss, floats(stats)
