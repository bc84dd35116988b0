"""Training-distribution and sampler machinery shared by DDPM-trained families (SD, SDXL, CogVideoX).

``DDPMFamilyMixin`` implements the ``PipelineAdapter`` methods that depend only on the DDPM noise
schedule, not on the network or the modality: timestep sampling (uniform integers in [0, T)),
forward noising, the training target for every ``prediction_type`` (``epsilon``, ``v_prediction``,
``sample``), the DDIM sampling scheduler and the DDIM-with-eta step with its log-probability.
Latents may have any rank ([B, C, H, W] images, [B, F, C, H, W] videos): per-sample schedule
values are broadcast over all non-batch dims.

The schedules are rebuilt from the pipeline scheduler's config, so whatever scheduler the pipeline
samples with (PNDM, Euler, DPM-Solver...) the training noise matches the model's training. A family
whose scheduler changes the schedule beyond what ``DDPMScheduler`` reads from the config (e.g.
CogVideoX's ``snr_shift_scale``) sets ``training_scheduler_class`` / ``sampling_scheduler_class`` to
its own scheduler classes (they must provide ``add_noise``, ``get_velocity`` and ``alphas_cumprod``).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffalign.samplers.ddim import ddim_step_moments, ddim_step_with_logprob
from diffalign.samplers.moments import StepMoments

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class DDPMFamilyMixin:
    """DDPM/DDIM parts of a ``PipelineAdapter`` (put it before ``PipelineAdapter`` in the bases).

    Needs ``self.pipe.scheduler`` (any diffusers scheduler whose config describes the DDPM betas).
    """

    #: scheduler class used for training noise and targets (built from the pipeline scheduler config).
    training_scheduler_class: ClassVar[type] = DDPMScheduler
    #: scheduler class used for DDIM sampling with log-probabilities.
    sampling_scheduler_class: ClassVar[type] = DDIMScheduler
    #: default eta of ``sampler_step`` when ``noise_level`` is None (1.0 = DDPM-like posterior, as DDPO).
    default_eta: ClassVar[float] = 1.0

    # ------------------------------------------------------------------ schedule
    @property
    def noise_scheduler(self):
        """The training noise scheduler (built once from the pipeline scheduler's config)."""
        sched = self.__dict__.get("_noise_scheduler")
        source = self.pipe.scheduler.config
        if sched is None or self.__dict__.get("_noise_scheduler_source") is not source:
            sched = self.training_scheduler_class.from_config(source)
            self.__dict__["_noise_scheduler"] = sched
            self.__dict__["_noise_scheduler_source"] = source
        return sched

    @property
    def prediction_type(self) -> str:
        """What the network predicts: ``epsilon``, ``v_prediction`` or ``sample``."""
        kind = self.noise_scheduler.config.prediction_type
        if kind not in PREDICTION_TYPES:
            raise ValueError(f"scheduler config has prediction_type={kind!r}; expected one of {PREDICTION_TYPES}")
        return kind

    @property
    def num_train_timesteps(self) -> int:
        return int(self.noise_scheduler.config.num_train_timesteps)

    def alphas_cumprod(self, timesteps: torch.Tensor, ndim: int, device=None) -> torch.Tensor:
        """``alphā_t`` per sample (fp32), shaped [B, 1, ..., 1] to broadcast over ``ndim``-dim latents."""
        table = self.noise_scheduler.alphas_cumprod.to(device=device or timesteps.device, dtype=torch.float32)
        values = table[timesteps.to(table.device).long().reshape(-1)]
        return values.reshape(-1, *([1] * (ndim - 1)))

    # ------------------------------------------------------------------ training distribution
    def sample_timesteps(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """Uniform integer timesteps in [0, T), shape [batch_size] (int64)."""
        gen_device = generator.device if generator is not None else (device or "cpu")
        t = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator, device=gen_device)
        return t.to(device or self.device)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``sqrt(alphā_t) x0 + sqrt(1 - alphā_t) noise``, per sample, any latent rank."""
        return self.noise_scheduler.add_noise(latents, noise, timesteps.long())

    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``noise`` (epsilon), ``sqrt(alphā_t) noise - sqrt(1 - alphā_t) x0`` (v_prediction) or ``x0``."""
        kind = self.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.noise_scheduler.get_velocity(latents, noise, timesteps.long())
        return latents

    def predict_original(self, model_output: torch.Tensor, timesteps: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        """The network's estimate of the clean latents x0 from its output at ``timesteps`` (fp32 math,
        returned in ``noisy``'s dtype). Used by reward-gradient trainers (e.g. ReFL) and previews."""
        t = torch.as_tensor(timesteps, device=noisy.device)
        if t.ndim == 0:
            t = t.expand(noisy.shape[0])
        abar = self.alphas_cumprod(t, noisy.ndim, device=noisy.device)
        x, out = noisy.float(), model_output.float()
        kind = self.prediction_type
        if kind == "epsilon":
            x0 = (x - (1 - abar).sqrt() * out) / abar.sqrt()
        elif kind == "v_prediction":
            x0 = abar.sqrt() * x - (1 - abar).sqrt() * out
        else:
            x0 = out
        return x0.to(noisy.dtype)

    # ------------------------------------------------------------------ sampling
    def sampling_scheduler(self, num_inference_steps: int):
        """A fresh DDIM scheduler (from the pipeline's config) with ``set_timesteps`` called."""
        sched = self.sampling_scheduler_class.from_config(self.pipe.scheduler.config)
        sched.set_timesteps(num_inference_steps, device=self.device)
        return sched

    def sampler_step(
        self,
        scheduler,
        model_output: torch.Tensor,
        timestep: torch.Tensor | int,
        sample: torch.Tensor,
        *,
        noise_level: float | None = None,
        prev_sample: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DDIM step with ``eta = noise_level`` (default 1.0) and its log-probability [B].

        ``noise_level = 0`` takes the deterministic DDIM step (log-prob reported as 0, as the flow
        kernels do for their ODE step); it has no density, so a given ``prev_sample`` is refused.
        """
        eta = self.default_eta if noise_level is None else float(noise_level)
        if eta == 0:
            if prev_sample is not None:
                raise ValueError("the eta = 0 DDIM step is deterministic: a given prev_sample has no log-density")
            mean = ddim_step_moments(scheduler, model_output, timestep, sample, 0.0).mean
            return mean.to(sample.dtype), torch.zeros(sample.shape[0], device=sample.device)
        return ddim_step_with_logprob(
            scheduler, model_output, timestep, sample, eta=eta, prev_sample=prev_sample, generator=generator
        )

    def transition_moments(
        self,
        scheduler,
        model_output: torch.Tensor,
        timestep: torch.Tensor | int,
        sample: torch.Tensor,
        *,
        noise_level: float | None = None,
    ) -> StepMoments:
        """The Gaussian of ``sampler_step`` (DDIM with ``eta = noise_level``): mean, std, KL scale."""
        eta = self.default_eta if noise_level is None else float(noise_level)
        return ddim_step_moments(scheduler, model_output, timestep, sample, eta)


__all__ = ["DDPMFamilyMixin", "PREDICTION_TYPES"]
