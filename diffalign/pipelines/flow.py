"""What every rectified-flow family shares (SD3, FLUX.1, Wan, Qwen-Image): the training
distribution, the noising and velocity target, and the Flow-GRPO sampling step with exact log-probs.

A flow family sets ``sigma = timestep / T`` (timesteps are ``sigma * 1000`` floats, as diffusers'
``FlowMatchEulerDiscreteScheduler`` makes them), noises ``x_sigma = (1 - sigma) x0 + sigma noise``
and trains the velocity ``noise - x0``. Training timesteps follow diffusers' DiT scripts
(``train_dreambooth_lora_{sd3,flux}.py``): ``u`` from ``compute_density_for_timestep_sampling``
(logit-normal by default), index ``floor(u * T)`` into the training scheduler's grid (shifted by the
config's ``shift`` unless the model shifts per resolution). Sampling uses a fresh
``FlowMatchEulerDiscreteScheduler`` and Flow-GRPO's SDE (or CPS) step; ``noise_level=0`` is the
Euler ODE step the pipelines take. A family supplies the scheduler config (``flow_scheduler_config``),
its inference sigmas (``inference_sigmas``: None = the scheduler's own) and, for resolution-dependent
shift, its image sequence length (``image_seq_len``).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling

from diffalign.samplers.flow import (
    flow_cps_step_moments,
    flow_cps_step_with_logprob,
    flow_sde_step_moments,
    flow_sde_step_with_logprob,
)
from diffalign.samplers.moments import StepMoments


#: LoRA targets of MMDiT joint attention (SD3, FLUX.1; Flow-GRPO's): the image and the text projections.
MMDIT_LORA_TARGETS: tuple[str, ...] = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
)


def calculate_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                    base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """The resolution-dependent shift ``mu`` of FLUX / SD3.5 / Qwen-Image: linear in the image
    sequence length between ``(base_seq_len, base_shift)`` and ``(max_seq_len, max_shift)``."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + (base_shift - m * base_seq_len)


class FlowMatchFamilyMixin:
    """Rectified-flow training distribution and sampling for a ``PipelineAdapter`` subclass."""

    #: Flow-GRPO's SDE noise level ``a``.
    default_noise_level: ClassVar[float] = 0.7
    #: stochastic step of ``sampler_step``: ``"sde"`` (Flow-GRPO's flow SDE) or ``"cps"``
    #: (coefficients-preserving sampling); set per instance (the Flow-GRPO trainer's ``sde_type``).
    sde_type: str = "sde"
    #: with ``sde_type == "cps"``: Flow-GRPO's un-normalised CPS log-prob (see ``flow_cps_step_with_logprob``).
    cps_reference_log_prob: bool = False
    #: timestep density: diffusers' ``weighting_scheme`` ("logit_normal", "mode" or "none" = uniform).
    weighting_scheme: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29

    # ------------------------------------------------------------------ schedule
    def flow_scheduler_config(self) -> dict[str, Any]:
        """Config of the family's ``FlowMatchEulerDiscreteScheduler`` (default: the pipeline's)."""
        return dict(self.pipe.scheduler.config)

    @property
    def noise_scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        """The training scheduler: built once from ``flow_scheduler_config``, never
        ``set_timesteps``-ed, so its ``timesteps`` are the training grid."""
        sched = self.__dict__.get("_noise_scheduler")
        source = self.pipe.scheduler.config
        if sched is None or self.__dict__.get("_noise_scheduler_source") is not source:
            sched = FlowMatchEulerDiscreteScheduler.from_config(self.flow_scheduler_config())
            self.__dict__["_noise_scheduler"] = sched
            self.__dict__["_noise_scheduler_source"] = source
        return sched

    @property
    def num_train_timesteps(self) -> int:
        return int(self.noise_scheduler.config.num_train_timesteps)

    def sigmas(self, timesteps: torch.Tensor, ndim: int, device=None) -> torch.Tensor:
        """``sigma = timestep / T`` per sample (fp32), shaped [B, 1, ..., 1] for ``ndim``-dim latents."""
        t = torch.as_tensor(timesteps, device=device).float().reshape(-1)
        return (t / self.num_train_timesteps).reshape(-1, *([1] * (ndim - 1)))

    # ------------------------------------------------------------------ training distribution
    def sample_timesteps(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """``sigma * 1000`` float timesteps from the ``weighting_scheme`` density on the training grid."""
        gen_device = generator.device if generator is not None else "cpu"
        u = compute_density_for_timestep_sampling(
            weighting_scheme=self.weighting_scheme,
            batch_size=batch_size,
            logit_mean=self.logit_mean,
            logit_std=self.logit_std,
            mode_scale=self.mode_scale,
            device=gen_device,
            generator=generator,
        )
        grid = self.noise_scheduler.timesteps
        index = (u.cpu() * self.num_train_timesteps).long().clamp(0, len(grid) - 1)
        return grid[index].to(device=device or self.device, dtype=torch.float32)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``(1 - sigma) x0 + sigma noise`` (fp32 math, returned in ``latents``' dtype)."""
        sigma = self.sigmas(timesteps, latents.ndim, device=latents.device)
        return ((1 - sigma) * latents.float() + sigma * noise.float()).to(latents.dtype)

    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The rectified-flow velocity ``noise - x0``."""
        return noise - latents

    def predict_original(self, model_output: torch.Tensor, timesteps: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        """The clean-latent estimate ``x0 = x - sigma v`` (for ReFL-style rewards and previews)."""
        t = self.batch_timesteps(timesteps, noisy)
        sigma = self.sigmas(t, noisy.ndim, device=noisy.device)
        return (noisy.float() - sigma * model_output.float()).to(noisy.dtype)

    # ------------------------------------------------------------------ sampling
    def image_seq_len(self, height: int, width: int) -> int:
        """Image tokens the transformer sees at ``height`` x ``width`` (for resolution-dependent shift)."""
        raise NotImplementedError(f"{type(self).__name__} has no resolution-dependent shift")

    #: the family's pipeline passes ``sigmas = linspace(1, 1/N, N)`` to ``set_timesteps`` (FLUX.1,
    #: Qwen-Image) instead of letting the scheduler space them (SD3, Wan).
    linspace_sigmas: ClassVar[bool] = False

    def inference_sigmas(self, num_inference_steps: int):
        """The sigmas the family's pipeline passes to ``set_timesteps`` (None: the scheduler's own;
        also None when the scheduler uses flow sigmas, as the pipelines do)."""
        if not self.linspace_sigmas or self.pipe.scheduler.config.get("use_flow_sigmas", False):
            return None
        return np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)

    def sampling_scheduler(self, num_inference_steps: int, *, height: int | None = None, width: int | None = None):
        """A fresh ``FlowMatchEulerDiscreteScheduler`` after ``set_timesteps``, as the pipeline makes it.

        With ``use_dynamic_shifting`` the shift ``mu`` follows the pipeline's rule for the image
        sequence length at ``height`` x ``width`` (default size when not given).
        """
        sched = FlowMatchEulerDiscreteScheduler.from_config(self.flow_scheduler_config())
        kwargs: dict[str, Any] = {}
        sigmas = self.inference_sigmas(num_inference_steps)
        if sigmas is not None:
            kwargs["sigmas"] = sigmas
        if sched.config.get("use_dynamic_shifting", False):
            default_h, default_w, _ = self.default_size()
            kwargs["mu"] = self.shift_mu(height or default_h, width or default_w, num_inference_steps, sched.config)
        sched.set_timesteps(None if sigmas is not None else num_inference_steps, device=self.device, **kwargs)
        return sched

    def shift_mu(self, height: int, width: int, num_inference_steps: int, config) -> float:
        """The dynamic shift ``mu`` the pipeline passes to ``set_timesteps`` (FLUX.1 / SD3.5 / Qwen-Image:
        :func:`calculate_shift` of the image sequence length with the scheduler config's terms; a family
        whose pipeline computes it otherwise, e.g. FLUX.2's step-dependent rule, overrides this)."""
        return calculate_shift(
            self.image_seq_len(height, width),
            config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5), config.get("max_shift", 1.15),
        )

    def sampler_step(self, scheduler, model_output, timestep, sample, *, noise_level=None, prev_sample=None,
                     generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow-GRPO's SDE step (``noise_level`` default 0.7; 0 = Euler ODE step, log-prob 0), or the
        coefficients-preserving step when ``sde_type == "cps"``."""
        level = self.default_noise_level if noise_level is None else float(noise_level)
        if self.sde_type == "cps":
            return flow_cps_step_with_logprob(
                scheduler, model_output, timestep, sample, noise_level=level, prev_sample=prev_sample,
                generator=generator, reference_log_prob=self.cps_reference_log_prob,
            )
        return flow_sde_step_with_logprob(
            scheduler, model_output, timestep, sample, noise_level=level, prev_sample=prev_sample, generator=generator
        )

    def transition_moments(
        self,
        scheduler,
        model_output: torch.Tensor,
        timestep: torch.Tensor | int | float,
        sample: torch.Tensor,
        *,
        noise_level: float | None = None,
    ) -> StepMoments:
        """The Gaussian of ``sampler_step`` (SDE or CPS by ``sde_type``): mean, std, KL scale."""
        level = self.default_noise_level if noise_level is None else float(noise_level)
        moments = flow_cps_step_moments if self.sde_type == "cps" else flow_sde_step_moments
        return moments(scheduler, model_output, timestep, sample, level)


__all__ = ["FlowMatchFamilyMixin", "MMDIT_LORA_TARGETS", "calculate_shift"]
