"""Stochastic sampler steps that also return the exact per-step log-probability.

- ``ddim_step_with_logprob``: DDIM with eta > 0 for DDPM-family schedulers (SD, SDXL, CogVideoX).
- ``flow_sde_step_with_logprob``: Flow-GRPO's SDE step for rectified-flow schedulers (SD3);
  ``flow_cps_step_with_logprob``: coefficients-preserving sampling.

Conventions shared by all: when ``prev_sample`` is given it is not resampled and ``log_prob`` is its
Gaussian log-density; ``log_prob`` has shape [B], the per-element log-density (constants included)
averaged over non-batch dims, computed in fp32. The ``*_moments`` functions return the transition
Gaussian itself (:class:`StepMoments`) for KL penalties against a reference network.
"""
from diffalign.samplers.ddim import ddim_step_moments, ddim_step_with_logprob
from diffalign.samplers.flow import (
    flow_cps_step_moments,
    flow_cps_step_with_logprob,
    flow_sde_step_moments,
    flow_sde_step_with_logprob,
    flow_step_size,
)
from diffalign.samplers.moments import StepMoments, gaussian_kl

__all__ = [
    "StepMoments",
    "ddim_step_moments",
    "ddim_step_with_logprob",
    "flow_cps_step_moments",
    "flow_cps_step_with_logprob",
    "flow_sde_step_moments",
    "flow_sde_step_with_logprob",
    "flow_step_size",
    "gaussian_kl",
]
