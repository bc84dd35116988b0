"""Alignment objectives as pure functions of per-sample errors (or log-probs).

Conventions shared by every loss:
- Inputs are float tensors of shape [B]: each sample's squared error between the network output and
  its target, averaged (mean, never sum) over every non-batch latent element. DenseDPO takes [B, S]
  per-segment errors, RankDPO [B, K] per-list errors, DSPO also the winner's per-element outputs, and
  the online losses per-transition log-probs, the reward-gradient loss differentiable rewards [B].
- The math runs in fp32 whatever the input dtype; reference inputs are detached.
- Each returns ``(loss, stats)``: ``loss`` a scalar tensor, ``stats`` a dict of python floats.
- Betas follow the official Diffusion-DPO convention u = -(beta/2)·(Δ_policy - Δ_ref) unless a
  docstring says otherwise (diffusers' SD script's beta 2500 ≙ 5000 here).

Pick one by name with :func:`get_loss`; add one with :func:`register_loss` (and, for a new kind of
training example, :func:`register_input_layout`): see ``diffalign.losses.registry`` and docs/losses.md.
"""
from diffalign.losses.dense import dense_dpo_loss
from diffalign.losses.dpo import diffusion_dpo_loss, flow_dpo_loss
from diffalign.losses.dspo import dspo_loss
from diffalign.losses.guards import AdaptiveKLController, ratio_norm_log_ratio, step_reweight
from diffalign.losses.kto import kto_loss
from diffalign.losses.mapo import mapo_loss
from diffalign.losses.policy_gradient import d3po_loss, ppo_loss
from diffalign.losses.rank import rankdpo_loss
from diffalign.losses.registry import (
    INPUT_LAYOUTS,
    LOSSES,
    InputLayout,
    LossSpec,
    get_loss,
    register_input_layout,
    register_loss,
)
from diffalign.losses.reward import REWARD_LOSS_KINDS, reward_loss
from diffalign.losses.sft import sft_loss
from diffalign.losses.smpo import smpo_loss

__all__ = [
    "AdaptiveKLController",
    "INPUT_LAYOUTS",
    "InputLayout",
    "LOSSES",
    "LossSpec",
    "REWARD_LOSS_KINDS",
    "d3po_loss",
    "dense_dpo_loss",
    "diffusion_dpo_loss",
    "dspo_loss",
    "flow_dpo_loss",
    "get_loss",
    "kto_loss",
    "ratio_norm_log_ratio",
    "mapo_loss",
    "ppo_loss",
    "rankdpo_loss",
    "register_input_layout",
    "register_loss",
    "reward_loss",
    "sft_loss",
    "smpo_loss",
    "step_reweight",
]
