"""MaPO: Margin-aware Preference Optimization (Hong, Paul et al., arXiv 2406.06424). Reference-free."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from diffalign.losses._common import check_positive, floats, implicit_accuracy, per_sample_tensors

__all__ = ["mapo_loss", "mapo_likelihood_score"]

# Below this |s·m| the closed form x / (e^x - 1) is replaced by its Taylor series (exact to ~1e-16),
# so m = 0 gives the limit 1 with the right gradient instead of 0/0.
_SERIES_BELOW = 1e-4


def mapo_likelihood_score(errors: Tensor, snr_value: float) -> Tensor:
    """MaPO's bounded likelihood score f(m) = s·m / (exp(s·m) - 1), with s = ``snr_value``.

    Decreasing in the error m, equal to 1 at m = 0 (the limit) and tending to 0 for large errors.
    """
    x = snr_value * errors
    small = x.abs() < _SERIES_BELOW
    safe_x = torch.where(small, torch.ones_like(x), x)
    closed_form = safe_x / torch.expm1(safe_x)
    series = 1.0 - x / 2.0 + x * x / 12.0
    return torch.where(small, series, closed_form)


def mapo_loss(
    policy_w: Tensor,
    policy_l: Tensor,
    beta: float = 0.1,
    snr_value: float = 0.5,
    num_train_timesteps: int = 1000,
) -> tuple[Tensor, dict[str, float]]:
    """MaPO loss exactly as ``utils.py::compute_loss`` of mapo-t2i/mapo.

    With f(m) = s·m / (exp(s·m) - 1), s = ``snr_value``, T = ``num_train_timesteps``:
    log_odds = f(policy_w) - f(policy_l); ratio = logsigmoid(T · log_odds) per pair;
    loss = mean(policy_w) - beta · mean(ratio), i.e. a denoising (SFT) term on winners plus a margin
    term that widens the bounded likelihood-odds gap between winner and loser.

    Forward passes: policy only (with grad) on winner and loser with shared noise and timestep;
    no reference network. Errors use the scheduler's own target (epsilon or v); s and T were tuned
    for SD/SDXL epsilon errors and need re-tuning for flow velocity errors.

    Stats: ``loss``, ``win_score`` = mean f(policy_w), ``lose_score`` = mean f(policy_l),
    ``margin_loss`` = -beta·mean(ratio) (MaPO's "OR loss"), ``margin_acc`` (fraction of pairs with
    log_odds > 0, ties 0.5), ``policy_w_err``, ``policy_l_err``.
    """
    beta = check_positive("beta", beta, allow_zero=True)
    snr_value = check_positive("snr_value", snr_value)
    if int(num_train_timesteps) != num_train_timesteps or num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be a positive integer, got {num_train_timesteps}")
    policy_w, policy_l = per_sample_tensors(policy_w=policy_w, policy_l=policy_l)

    win_score = mapo_likelihood_score(policy_w, snr_value)
    lose_score = mapo_likelihood_score(policy_l, snr_value)
    log_odds = win_score - lose_score
    ratio = F.logsigmoid(log_odds * float(num_train_timesteps))
    margin_loss = -beta * ratio.mean()
    loss = policy_w.mean() + margin_loss
    stats = {
        "loss": loss,
        "win_score": win_score.mean(),
        "lose_score": lose_score.mean(),
        "margin_loss": margin_loss,
        "margin_acc": implicit_accuracy(log_odds),
        "policy_w_err": policy_w.mean(),
        "policy_l_err": policy_l.mean(),
    }
    return loss, floats(stats)
