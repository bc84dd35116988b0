"""DDIM with eta > 0 as a Gaussian policy: one step and the exact log-density of the transition.

For a DDPM-family scheduler after ``set_timesteps(N)`` (``T`` training timesteps), at timestep ``t``:

- ``t_prev = max(t - T // N, 0)`` (clamped, so ``final_alpha_cumprod`` is never used);
- ``x0_hat`` / ``eps_hat`` from the model output for the scheduler's ``prediction_type``
  (``epsilon``, ``sample``, ``v_prediction``); ``x0_hat`` thresholded or clipped as diffusers' DDIM
  does when the config asks for it (``eps_hat`` is not re-derived, as in diffusers' default);
- ``variance = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)``, ``std = eta * sqrt(variance)``;
- ``mean = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - std^2) eps_hat``;
- ``x_prev = mean + std * z``; ``log_prob`` = mean over non-batch dims of
  ``-(x_prev - mean)^2 / (2 std^2) - log(std) - log(2 pi) / 2``, in fp32, shape [B].
"""
from __future__ import annotations

import math

import torch

from diffalign.samplers.moments import StepMoments
from diffalign.utils.random import randn

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _per_sample(table: torch.Tensor, index: torch.Tensor, ndim: int) -> torch.Tensor:
    """``table[index]`` as fp32 shaped [B, 1, ..., 1] for ``ndim``-dim samples."""
    return table.to(device=index.device, dtype=torch.float32)[index].reshape(-1, *([1] * (ndim - 1)))


def _timesteps_per_sample(timestep, batch_size: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(timestep, device=device)
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise ValueError(f"DDIM timesteps must be integers, got {t.tolist()}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch_size)
    if t.numel() != batch_size:
        raise ValueError(f"timestep has {t.numel()} values for a batch of {batch_size} samples")
    return t


def ddim_step_moments(
    scheduler,
    model_output: torch.Tensor,
    timestep: torch.Tensor | int,
    sample: torch.Tensor,
    eta: float = 1.0,
) -> StepMoments:
    """Mean and std of the DDIM-with-eta transition Gaussian (fp32; arguments as
    :func:`ddim_step_with_logprob`). ``kl_scale`` equals ``std``. ``eta = 0`` is allowed here and
    gives the deterministic DDIM step (``std = 0``, ``mean`` is the next sample)."""
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if getattr(scheduler, "num_inference_steps", None) is None:
        raise ValueError(f"{type(scheduler).__name__}.set_timesteps(num_inference_steps) must be called first")
    if model_output.shape != sample.shape:
        raise ValueError(f"model_output shape {tuple(model_output.shape)} != sample shape {tuple(sample.shape)}")
    config = scheduler.config
    batch, ndim, device = sample.shape[0], sample.ndim, sample.device

    t = _timesteps_per_sample(timestep, batch, device)
    t_prev = (t - config.num_train_timesteps // scheduler.num_inference_steps).clamp(min=0)
    abar_t = _per_sample(scheduler.alphas_cumprod, t, ndim)
    abar_prev = _per_sample(scheduler.alphas_cumprod, t_prev, ndim)
    beta_t = 1 - abar_t

    x, out = sample.float(), model_output.float()
    kind = config.prediction_type
    if kind == "epsilon":
        x0 = (x - beta_t.sqrt() * out) / abar_t.sqrt()
        eps = out
    elif kind == "sample":
        x0 = out
        eps = (x - abar_t.sqrt() * x0) / beta_t.sqrt()
    elif kind == "v_prediction":
        x0 = abar_t.sqrt() * x - beta_t.sqrt() * out
        eps = abar_t.sqrt() * out + beta_t.sqrt() * x
    else:
        raise ValueError(f"prediction_type {kind!r} must be one of 'epsilon', 'sample', 'v_prediction'")

    if config.get("thresholding", False):
        x0 = scheduler._threshold_sample(x0)
    elif config.get("clip_sample", False):
        limit = config.get("clip_sample_range", 1.0)
        x0 = x0.clamp(-limit, limit)

    variance = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
    std = eta * variance.sqrt()
    if eta > 0 and bool((std == 0).any()):
        raise ValueError(
            f"zero step variance at timestep(s) {t[(std == 0).reshape(-1)].tolist()} (t_prev == t): the step has "
            "no log-density; use a timestep schedule that does not contain 0 (e.g. steps_offset=1)"
        )
    direction = (1 - abar_prev - std**2).clamp(min=0).sqrt() * eps
    mean = abar_prev.sqrt() * x0 + direction

    return StepMoments(mean=mean, std=std, kl_scale=std)


def ddim_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: torch.Tensor | int,
    sample: torch.Tensor,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step with ``eta`` > 0 and the log-probability of the resulting ``prev_sample``.

    Args:
        scheduler: a diffusers DDIM-family scheduler (``DDIMScheduler`` or one with the same
            ``alphas_cumprod`` / ``config`` fields) after ``set_timesteps``.
        model_output: the network output at ``timestep`` (after classifier-free guidance).
        timestep: an int, a 0-d tensor, or a [B] tensor of per-sample integer timesteps.
        sample: the current latents x_t, [B, ...] of any rank.
        eta: DDIM stochasticity, must be > 0 (1.0 = DDPM-like posterior variance).
        prev_sample: a stored x_{t_prev}; when given it is not resampled and ``log_prob`` is its
            log-density under the current ``model_output``.
        generator: random generator for the step noise (its device may differ from ``sample``'s), or one per row.

    Returns:
        ``(prev_sample, log_prob)``: ``prev_sample`` in ``sample``'s dtype, ``log_prob`` [B] fp32.
    """
    if not eta > 0:
        raise ValueError(
            f"ddim_step_with_logprob needs eta > 0 (got {eta}): with eta = 0 the DDIM step is deterministic "
            "and has no log-density; use eta=1.0 as DDPO/D3PO do"
        )
    moments = ddim_step_moments(scheduler, model_output, timestep, sample, eta)
    mean, std, batch, device = moments.mean, moments.std, sample.shape[0], sample.device

    if prev_sample is None:
        noise = randn(sample.shape, generator, device)
        prev_sample = (mean + std * noise).to(sample.dtype)
    elif prev_sample.shape != sample.shape:
        raise ValueError(f"prev_sample shape {tuple(prev_sample.shape)} != sample shape {tuple(sample.shape)}")

    # Density of the sample as stored (after the cast), so re-evaluating a stored sample matches.
    diff = prev_sample.detach().float() - mean
    log_prob = -(diff**2) / (2 * std**2) - std.log() - _HALF_LOG_2PI
    return prev_sample, log_prob.reshape(batch, -1).mean(dim=1)


__all__ = ["ddim_step_moments", "ddim_step_with_logprob"]
