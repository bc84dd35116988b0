"""Stochastic rectified-flow steps with the exact log-density of the transition (Flow-GRPO).

Rectified flow: ``x_sigma = (1 - sigma) x0 + sigma eps`` with sigma in [0, 1] (1 = pure noise);
the network predicts the velocity ``v = eps - x0``. Both kernels work on a diffusers
``FlowMatchEulerDiscreteScheduler`` after ``set_timesteps``: the timestep given (the network's
``sigma * 1000`` value, one of ``scheduler.timesteps``) is mapped to its index ``i`` in the schedule,
``sigma = sigmas[i]``, ``sigma_next = sigmas[i + 1]``, ``dt = sigma_next - sigma`` (< 0). The
scheduler's own state (``step_index``) is neither read nor changed, so steps can be evaluated in any
order and for per-sample timesteps.

``flow_sde_step_with_logprob`` (Flow-GRPO's ``sde_type="sde"``), with ``a = noise_level``:

- ``std_t = a * sqrt(sigma / (1 - sigma))``; at ``sigma == 1`` the denominator uses the schedule's
  second sigma, ``1 - sigmas[1]``, as the reference does;
- ``mean = x (1 + std_t^2 dt / (2 sigma)) + v (1 + std_t^2 (1 - sigma) / (2 sigma)) dt`` (the reverse
  SDE whose marginals match the probability-flow ODE);
- ``x_next = mean + std_t sqrt(|dt|) z``; the Gaussian's std is ``std_t sqrt(|dt|)``.

``flow_cps_step_with_logprob`` (coefficients-preserving sampling, ``sde_type="cps"``):

- ``std = sigma_next sin(a pi / 2)``; ``x0_hat = x - sigma v``; ``eps_hat = x + (1 - sigma) v``;
- ``mean = (1 - sigma_next) x0_hat + sqrt(sigma_next^2 - std^2) eps_hat``; ``x_next = mean + std z``,
  so the signal coefficient ``1 - sigma_next`` and the total noise std ``sigma_next`` of the marginal
  are preserved exactly.

Conventions shared with ``ddim_step_with_logprob``: all math in fp32; ``prev_sample`` is returned in
``sample``'s dtype and ``log_prob`` is the density of that returned (cast) value, so re-evaluating a
stored ``prev_sample`` gives back exactly the log-prob it was sampled with; ``log_prob`` is the
per-element Gaussian log-density ``-(x_next - mean)^2 / (2 std^2) - log(std) - log(2 pi) / 2``
averaged over every non-batch dim, shape [B].

Deterministic steps (``noise_level == 0``, and CPS's last step where ``sigma_next == 0``): the step
is the exact Euler ODE step ``x + dt v`` (CPS: ``x0_hat``) and has no density. Their ``log_prob`` is
reported as 0 (the log of the probability 1 of the only possible outcome) when the step is sampled,
so rollouts that mix ODE and SDE steps (Flow-GRPO-Fast windows) stay rectangular; such steps carry
no policy gradient and must not be trained on. Asking for the density of a *given* ``prev_sample``
under a deterministic step raises ``ValueError``.
"""
from __future__ import annotations

import math

import torch

from diffalign.samplers.moments import StepMoments
from diffalign.utils.random import randn

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _step_indices(scheduler, timestep, batch_size: int) -> torch.Tensor:
    """Index in ``scheduler.timesteps`` of each sample's timestep, shape [B] (int64, CPU)."""
    schedule = getattr(scheduler, "timesteps", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if getattr(scheduler, "num_inference_steps", None) is None or schedule is None or sigmas is None:
        raise ValueError(f"{type(scheduler).__name__}.set_timesteps(num_inference_steps) must be called first")
    schedule = schedule.detach().to("cpu", torch.float64)
    t = torch.as_tensor(timestep).detach().to("cpu", torch.float64).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch_size)
    if t.numel() != batch_size:
        raise ValueError(f"timestep has {t.numel()} values for a batch of {batch_size} samples")
    index = (t[:, None] - schedule[None, :]).abs().argmin(dim=1)
    off = ~torch.isclose(t, schedule[index], rtol=1e-3, atol=1e-3)
    if bool(off.any()):
        raise ValueError(
            f"timestep(s) {t[off].tolist()} are not in the scheduler's schedule {schedule.tolist()}; "
            "pass values of scheduler.timesteps (set_timesteps with the same number of steps)"
        )
    return index


def _step_sigmas(scheduler, timestep, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sigma, sigma_next)`` per sample, fp32, shaped [B, 1, ..., 1] like ``sample``."""
    index = _step_indices(scheduler, timestep, sample.shape[0])
    table = scheduler.sigmas.detach().to("cpu", torch.float32)
    shape = (-1, *([1] * (sample.ndim - 1)))
    sigma = table[index].reshape(shape).to(sample.device)
    sigma_next = table[index + 1].reshape(shape).to(sample.device)
    return sigma, sigma_next


def flow_step_size(scheduler, timestep, sample: torch.Tensor) -> torch.Tensor:
    """The flow-time length ``sigma - sigma_next`` (= ``|dt|``, > 0) of each sample's step, [B] fp32."""
    sigma, sigma_next = _step_sigmas(scheduler, timestep, sample)
    return (sigma - sigma_next).reshape(-1)


def _check_shapes(model_output: torch.Tensor, sample: torch.Tensor, prev_sample: torch.Tensor | None) -> None:
    if model_output.shape != sample.shape:
        raise ValueError(f"model_output shape {tuple(model_output.shape)} != sample shape {tuple(sample.shape)}")
    if prev_sample is not None and prev_sample.shape != sample.shape:
        raise ValueError(f"prev_sample shape {tuple(prev_sample.shape)} != sample shape {tuple(sample.shape)}")


def _check_noise_level(noise_level: float) -> float:
    noise_level = float(noise_level)
    if not noise_level >= 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level}")
    return noise_level


def _draw(mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype, generator) -> torch.Tensor:
    """``mean + std * z`` (z standard normal, fp32, drawn on the generator's device), cast to ``dtype``."""
    z = randn(mean.shape, generator, mean.device)
    return (mean + std * z).to(dtype)


def _gaussian_log_prob(prev_sample: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, sampled: bool) -> torch.Tensor:
    """Per-sample mean over non-batch dims of the Gaussian log-density; 0 where ``std == 0``
    and the value was sampled (deterministic step), ``ValueError`` where it was given."""
    batch = prev_sample.shape[0]
    std = std.expand_as(mean)
    degenerate = std == 0
    if bool(degenerate.any()):
        if not sampled:
            rows = degenerate.reshape(batch, -1).any(dim=1).nonzero().reshape(-1).tolist()
            raise ValueError(
                f"the step of sample(s) {rows} is deterministic (zero noise: noise_level 0, or CPS's last step), "
                "so a given prev_sample has no log-density; train only on stochastic steps"
            )
    safe_std = torch.where(degenerate, torch.ones_like(std), std)
    diff = prev_sample.detach().float() - mean
    log_prob = -(diff**2) / (2 * safe_std**2) - safe_std.log() - _HALF_LOG_2PI
    log_prob = torch.where(degenerate, torch.zeros_like(log_prob), log_prob)
    return log_prob.reshape(batch, -1).mean(dim=1)


def flow_sde_step_moments(
    scheduler,
    model_output: torch.Tensor,
    timestep: torch.Tensor | float,
    sample: torch.Tensor,
    noise_level: float = 0.7,
) -> StepMoments:
    """Mean and std of Flow-GRPO's SDE transition (fp32; arguments as
    :func:`flow_sde_step_with_logprob`). ``kl_scale`` is the diffusion coefficient ``std_t``
    (the std without the ``sqrt(|dt|)`` factor), as Flow-GRPO's KL term uses it; ``std = 0`` at
    ``noise_level == 0`` (the Euler ODE step, ``mean`` is the next sample)."""
    noise_level = _check_noise_level(noise_level)
    if model_output.shape != sample.shape:
        raise ValueError(f"model_output shape {tuple(model_output.shape)} != sample shape {tuple(sample.shape)}")
    sigma, sigma_next = _step_sigmas(scheduler, timestep, sample)
    dt = sigma_next - sigma
    x, v = sample.float(), model_output.float()
    if noise_level == 0:
        zero = torch.zeros_like(sigma)
        return StepMoments(mean=x + dt * v, std=zero, kl_scale=zero)
    second_sigma = float(scheduler.sigmas[1])
    denominator = 1 - torch.where(sigma == 1, torch.full_like(sigma, second_sigma), sigma)
    std_t = noise_level * (sigma / denominator).sqrt()
    mean = x * (1 + std_t**2 / (2 * sigma) * dt) + v * (1 + std_t**2 * (1 - sigma) / (2 * sigma)) * dt
    return StepMoments(mean=mean, std=std_t * (-dt).sqrt(), kl_scale=std_t)


def flow_cps_step_moments(
    scheduler,
    model_output: torch.Tensor,
    timestep: torch.Tensor | float,
    sample: torch.Tensor,
    noise_level: float = 0.8,
) -> StepMoments:
    """Mean and std of the CPS transition (fp32; arguments as :func:`flow_cps_step_with_logprob`);
    ``kl_scale`` equals ``std``."""
    noise_level = _check_noise_level(noise_level)
    if model_output.shape != sample.shape:
        raise ValueError(f"model_output shape {tuple(model_output.shape)} != sample shape {tuple(sample.shape)}")
    sigma, sigma_next = _step_sigmas(scheduler, timestep, sample)
    x, v = sample.float(), model_output.float()
    std = sigma_next * math.sin(noise_level * math.pi / 2)
    x0_hat = x - sigma * v
    eps_hat = x + (1 - sigma) * v
    mean = (1 - sigma_next) * x0_hat + (sigma_next**2 - std**2).clamp(min=0).sqrt() * eps_hat
    return StepMoments(mean=mean, std=std, kl_scale=std)


def flow_sde_step_with_logprob(
    scheduler, model_output: torch.Tensor, timestep: torch.Tensor | float, sample: torch.Tensor,
    noise_level: float = 0.7, prev_sample: torch.Tensor | None = None, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of Flow-GRPO's flow SDE and the log-probability of the resulting ``prev_sample``.

    Args:
        scheduler: a ``FlowMatchEulerDiscreteScheduler`` after ``set_timesteps``.
        model_output: the predicted velocity at ``timestep`` (after classifier-free guidance).
        timestep: a float, a 0-d tensor, or a [B] tensor of per-sample values of ``scheduler.timesteps``.
        sample: the current latents x_sigma, [B, ...] of any rank.
        noise_level: Flow-GRPO's ``a`` (0.7 in its configs); 0 gives the Euler ODE step exactly.
        prev_sample: a stored next latent; when given it is not resampled and ``log_prob`` is its
            log-density under the current ``model_output``.
        generator: random generator for the step noise (its device may differ from ``sample``'s), or one per row.

    Returns:
        ``(prev_sample, log_prob)``: ``prev_sample`` in ``sample``'s dtype, ``log_prob`` [B] fp32
        (0 for a sampled deterministic step, see the module docstring).
    """
    _check_shapes(model_output, sample, prev_sample)
    moments = flow_sde_step_moments(scheduler, model_output, timestep, sample, noise_level)
    mean, std = moments.mean, moments.std

    sampled = prev_sample is None
    if sampled:
        prev_sample = _draw(mean, std, sample.dtype, generator)
    return prev_sample, _gaussian_log_prob(prev_sample, mean, std, sampled)


def flow_cps_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: torch.Tensor | float,
    sample: torch.Tensor,
    noise_level: float = 0.8,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reference_log_prob: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One coefficients-preserving (CPS) step and the log-probability of the resulting ``prev_sample``.

    Arguments as ``flow_sde_step_with_logprob``; ``noise_level`` is CPS's ``a`` (0.8 recommended by
    Flow-GRPO's README), 0 gives the Euler ODE step (up to float rounding).

    ``reference_log_prob``: Flow-GRPO's CPS code returns an *un-normalised* value,
    ``-(x_next - mean)^2`` averaged over non-batch dims (no ``1/(2 std^2)`` factor, no constants).
    Its CPS configs (``clip_range`` 1e-5) were tuned on that scale; pass ``True`` to reproduce them
    exactly. The default ``False`` returns the true Gaussian log-density like every other kernel
    here (re-tune the PPO clip range then). With ``True`` deterministic steps are not special-cased:
    the value is just the squared-error term.
    """
    _check_shapes(model_output, sample, prev_sample)
    moments = flow_cps_step_moments(scheduler, model_output, timestep, sample, noise_level)
    mean, std = moments.mean, moments.std

    sampled = prev_sample is None
    if sampled:
        prev_sample = _draw(mean, std, sample.dtype, generator)
    if reference_log_prob:
        sq = (prev_sample.detach().float() - mean) ** 2
        return prev_sample, -sq.reshape(sq.shape[0], -1).mean(dim=1)
    return prev_sample, _gaussian_log_prob(prev_sample, mean, std, sampled)


__all__ = [
    "flow_cps_step_moments",
    "flow_cps_step_with_logprob",
    "flow_sde_step_moments",
    "flow_sde_step_with_logprob",
]
