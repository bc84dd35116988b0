"""DSPO: Direct Score Preference Optimization (Zhu, Xiao, Honavar; ICLR 2025; code huaishengzhu/DSPO).

DSPO regresses the policy's winner prediction (a score) instead of using a logistic loss, so it needs
the winner's per-element predictions, not only per-sample errors. Both loss forms of the released
``train.py`` are provided; they are selected there by the ``--sdxl`` flag and named after it here,
but either form runs on any model.
"""
from __future__ import annotations

import torch
from torch import Tensor

from diffalign.losses._common import (
    as_fp32,
    check_positive,
    check_same_shape,
    dpo_inside_term,
    dpo_stats,
    floats,
    per_sample_tensors,
)

__all__ = ["DSPO_BRANCHES", "DSPO_DEFAULT_BETA", "dspo_loss"]

DSPO_BRANCHES = ("sd15", "sdxl")
# beta of the released launchers (launchers/sd15.sh, launchers/sdxl.sh).
DSPO_DEFAULT_BETA = {"sd15": 0.001, "sdxl": 5000.0}


def _per_sample_mean(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


def _broadcast_per_sample(values: Tensor, like: Tensor) -> Tensor:
    return values.reshape(values.shape + (1,) * (like.ndim - 1))


def dspo_loss(
    policy_pred_w: Tensor,
    ref_pred_w: Tensor,
    target_w: Tensor,
    policy_l: Tensor,
    ref_l: Tensor,
    beta: float | None = None,
    branch: str = "sd15",
    gap_threshold: float = 0.1,
) -> tuple[Tensor, dict[str, float]]:
    """DSPO loss, either released branch.

    Arguments:
    - ``policy_pred_w``: the policy's raw output on the noised winners, any shape [B, ...] (with grad).
    - ``ref_pred_w``: the reference's output on the same inputs (no grad; detached here anyway).
    - ``target_w``: the training target of the winners (the noise for epsilon models, v for v-models).
    - ``policy_l``, ``ref_l``: per-sample errors [B] of policy and reference on the losers (the loser
      only enters through the DPO inside term).
    - ``beta``: defaults to the released launcher value of the branch (sd15: 0.001, sdxl: 5000).
    - ``branch``: ``"sd15"`` or ``"sdxl"`` (the ``--sdxl`` switch of the released script).
    - ``gap_threshold``: the sdxl branch's switch on the mean squared policy-reference gap (0.1).

    With winner errors policy_w = mean((policy_pred_w - target_w)²), ref_w likewise, the DPO inside
    term u = -(beta/2)·((policy_w - ref_w) - (policy_l - ref_l)) and the per-pair weight
    w = 1 - sigmoid(u) (not detached, as released), residual d = policy_pred_w - target_w and score
    gap g = policy_pred_w - ref_pred_w:
    - ``sd15``: loss = mean over pairs and elements of (d - beta·w·g)²: regress the winner score onto
      the data score shifted along (policy - reference) by the preference weight. With the released
      beta = 0.001, u ≈ 0 and the loss is numerically close to winner-only SFT.
    - ``sdxl``: G = mean(g²) over the batch; if G >= ``gap_threshold``: loss = mean((w·g)²), else
      loss = mean(w²) (always the case at initialisation, where policy = reference). The switch is a
      batch statistic; ``stats["gap_gate_open"]`` reports which form ran.

    Forward passes: as Diffusion-DPO (policy with grad and reference without grad on winners and
    losers, shared noise and timestep), but the trainer hands over the winner half's per-element
    outputs and target instead of its per-sample errors.

    Stats: the Diffusion-DPO stats plus ``score_gap`` (G) and ``gap_gate_open`` (1.0 when the sdxl
    branch used the (w·g)² form, else 0.0; always 0.0 for sd15) and ``weight_mean`` (mean w).
    """
    if branch not in DSPO_BRANCHES:
        raise ValueError(f"branch must be one of {DSPO_BRANCHES}, got {branch!r}")
    beta = check_positive("beta", DSPO_DEFAULT_BETA[branch] if beta is None else beta)
    gap_threshold = check_positive("gap_threshold", gap_threshold, allow_zero=True)
    policy_pred_w = as_fp32("policy_pred_w", policy_pred_w, ndim=None, min_ndim=1)
    ref_pred_w = as_fp32("ref_pred_w", ref_pred_w, ndim=None, min_ndim=1).detach()
    target_w = as_fp32("target_w", target_w, ndim=None, min_ndim=1).detach()
    check_same_shape(policy_pred_w=policy_pred_w, ref_pred_w=ref_pred_w, target_w=target_w)
    policy_l, ref_l = per_sample_tensors(policy_l=policy_l, ref_l=ref_l)
    if policy_l.shape[0] != policy_pred_w.shape[0]:
        raise ValueError(
            f"batch size mismatch: policy_pred_w has {policy_pred_w.shape[0]} winners but policy_l has "
            f"{policy_l.shape[0]} losers"
        )

    residual = policy_pred_w - target_w
    score_gap = policy_pred_w - ref_pred_w
    policy_w = _per_sample_mean(residual.pow(2))
    ref_w = _per_sample_mean((ref_pred_w - target_w).pow(2))
    inside = dpo_inside_term(policy_w, policy_l, ref_w, ref_l, beta)
    weight = 1.0 - torch.sigmoid(inside)
    weight_el = _broadcast_per_sample(weight, score_gap)
    mean_sq_gap = score_gap.detach().pow(2).mean()

    gate_open = False
    if branch == "sd15":
        loss = (residual - beta * weight_el * score_gap).pow(2).mean()
    else:
        gate_open = bool(mean_sq_gap >= gap_threshold)
        loss = (weight_el * score_gap).pow(2).mean() if gate_open else weight.pow(2).mean()

    stats = dpo_stats(loss, inside, policy_w, policy_l, ref_w, ref_l)
    stats.update(score_gap=mean_sq_gap, gap_gate_open=float(gate_open), weight_mean=weight.mean())
    return loss, floats(stats)
