"""Reward-hacking guards: pure functions and a small controller.

- :func:`ratio_norm_log_ratio`: GRPO-Guard's RatioNorm (Wang et al., arXiv 2510.22319, Eq. 8) for
  Gaussian transitions ``N(mean, std^2)``. With log-probs averaged over elements (diffalign's and
  Flow-GRPO's convention) and ``x = mean_old + std * eps``, the plain log-ratio is
  ``eps·dmean/std - mean(dmean^2)/(2 std^2)``: its mean is negative (ratios sit below 1, so the
  clip stops bounding over-confident positive samples) and its scale is ``1/std``, different at
  every step. RatioNorm removes the bias and the scale:
  ``log r_hat = std * (log r + mean(dmean^2) / (2 std^2))`` (= ``mean(eps·dmean)``).
  Checked by derivation and against TeleBoost's ``grpo_guard.compute_ratio_norm_bias``; the
  authors' own code was not read.
- :func:`step_reweight`: GRPO-Guard's gradient reweighting across denoising steps (arXiv
  2510.22319, Eq. 12, Flow-GRPO form): the step's policy loss is multiplied by
  ``delta_t = 1 / |dt|`` (``dt = sigma_next - sigma``, the step's flow-time increment; one scalar
  per step, the batch mean of ``|dt|``). After RatioNorm the log-ratio is ``mean(eps·dmean)`` and
  ``dmean`` is proportional to ``|dt|`` times the change of the velocity (Flow-GRPO's mean has the
  velocity coefficient ``(1 + a^2/2) dt``, a constant times ``dt``), so without the weight the steps
  with small ``dt`` would get proportionally smaller gradients; ``1 / |dt|`` makes the gradient
  magnitude the same at every step. Only the policy loss is reweighted, not the KL term. Checked
  against two third-party implementations (the paper's text and the authors' code were not read):
  TeleBoost's ``recipe/teleboost/algorithms/grpo_guard.py`` (FortPercent/TeleBoost,
  ``compute_grad_reweight_delta``, form ``"flow_grpo"``: ``delta = 1 / dt``, citing Eq. 12; its
  DanceGRPO form ``(1 + eta^2 (1 - t) / (2 t)) / dt`` is not implemented here) and verl-omni's
  ``GRPOGuardLoss.compute_loss`` (verl-project/verl-omni: the step's clipped loss divided by
  ``mean(sqrt(|dt|))^2``).
- :class:`AdaptiveKLController`: the adaptive KL coefficient of Ziegler et al. 2019 (as in TRL's
  PPO): ``beta *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon``, optionally kept
  within ``[beta_min, beta_max]`` (a cap stops beta from climbing until it undoes what the policy
  gained; a floor stops it from vanishing).
"""
from __future__ import annotations

import torch
from torch import Tensor


def ratio_norm_log_ratio(log_prob: Tensor, old_log_prob: Tensor, mean: Tensor, old_mean: Tensor, std: Tensor | float) -> Tensor:
    """GRPO-Guard's normalised log-ratio [B] (see the module docstring). ``mean`` / ``old_mean``:
    the transition means under the current and the behaviour policy [B, ...]; ``std``: the
    transition std (a float, [B] or [B, 1, ..., 1])."""
    diff = (mean.float() - old_mean.float()).pow(2)
    dmean_sq = diff.reshape(diff.shape[0], -1).mean(dim=1)
    std = torch.as_tensor(std, dtype=torch.float32, device=log_prob.device).reshape(-1)
    return std * ((log_prob - old_log_prob) + dmean_sq / (2 * std**2))


def step_reweight(policy_loss: Tensor, dt: Tensor | float) -> Tensor:
    """GRPO-Guard's per-step gradient reweighting (see the module docstring): ``policy_loss / mean(|dt|)``.
    ``policy_loss``: the step's (scalar) clipped policy loss; ``dt``: the step's flow-time increment
    (a float or [B]; its sign is ignored, it must not be 0)."""
    dt = torch.as_tensor(dt, dtype=torch.float32, device=policy_loss.device).abs().mean()
    if not bool(dt > 0):
        raise ValueError("step_reweight needs a non-zero step size dt (a deterministic or empty step has no weight)")
    return policy_loss / dt


class AdaptiveKLController:
    """Adapts the KL coefficient ``beta`` so the measured KL tracks ``target``."""

    def __init__(self, beta: float, target: float, horizon: float = 10.0, beta_min: float | None = None,
                 beta_max: float | None = None):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"adaptive KL needs target > 0 and horizon > 0, got target={target}, horizon={horizon}")
        if beta_min is not None and beta_max is not None and beta_min > beta_max:
            raise ValueError(f"adaptive KL needs beta_min <= beta_max, got {beta_min} > {beta_max}")
        self.beta, self.target, self.horizon = float(beta), float(target), float(horizon)
        self.beta_min = None if beta_min is None else float(beta_min)
        self.beta_max = None if beta_max is None else float(beta_max)
        self.beta = self._bounded(self.beta)

    def _bounded(self, beta: float) -> float:
        if self.beta_max is not None:
            beta = min(beta, self.beta_max)
        if self.beta_min is not None:
            beta = max(beta, self.beta_min)
        return beta

    def update(self, kl: float, n_steps: int = 1) -> float:
        """Update from the KL measured over the last ``n_steps`` updates; return the new beta."""
        error = min(max(float(kl) / self.target - 1.0, -0.2), 0.2)
        self.beta = self._bounded(self.beta * (1.0 + error * n_steps / self.horizon))
        return self.beta

    def state_dict(self) -> dict:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict) -> None:
        self.beta = float(state["beta"])


__all__ = ["AdaptiveKLController", "ratio_norm_log_ratio", "step_reweight"]
