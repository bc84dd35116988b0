"""Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``): MMDiT on rectified flow.

- Conditioning: CLIP-L + CLIP-G (+ T5 when the pipeline has ``text_encoder_3``; zeros otherwise),
  through the pipeline's own ``encode_prompt``: ``prompt_embeds`` [B, 77 + L_t5, D] and
  ``pooled_prompt_embeds`` [B, D_pool].
- Latents: ``z = (vae_mean_or_sample - shift_factor) * scaling_factor`` and back.
- Training distribution (as diffusers' ``train_dreambooth_sd3.py``): ``u ~ sigmoid(N(logit_mean,
  logit_std))``, index ``floor(u * T)`` into the training scheduler's *shifted* timesteps (so the
  model's ``shift`` applies); timestep = ``sigma * 1000`` (float); ``x_sigma = (1 - sigma) x0 +
  sigma noise``; target the velocity ``noise - x0``.
- Sampling: a fresh ``FlowMatchEulerDiscreteScheduler`` from the pipeline's config and Flow-GRPO's
  SDE step (``noise_level`` 0.7 by default; 0 is the Euler ODE step the pipeline itself takes).
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
from diffusers.training_utils import compute_density_for_timestep_sampling

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.samplers.flow import (
    flow_cps_step_moments,
    flow_cps_step_with_logprob,
    flow_sde_step_moments,
    flow_sde_step_with_logprob,
)
from diffalign.samplers.moments import StepMoments


class SD3Adapter(PipelineAdapter):
    """Adapter for ``StableDiffusion3Pipeline`` (SD3-medium, SD3.5-medium/large)."""

    family = "sd3"
    pipeline_class = StableDiffusion3Pipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    #: Flow-GRPO's SD3 LoRA targets: the joint attention's image and context projections.
    default_lora_targets = (
        "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
        "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    )
    #: Flow-GRPO's SDE noise level ``a``.
    default_noise_level: ClassVar[float] = 0.7
    #: stochastic step of ``sampler_step``: ``"sde"`` (Flow-GRPO's flow SDE) or ``"cps"``
    #: (coefficients-preserving sampling); set per instance (the Flow-GRPO trainer's ``sde_type``).
    sde_type: str = "sde"
    #: with ``sde_type == "cps"``: Flow-GRPO's un-normalised CPS log-prob (see ``flow_cps_step_with_logprob``).
    cps_reference_log_prob: bool = False
    #: T5 tokens per prompt (the diffusers pipeline's default, so ``generate`` conditions alike); a
    #: pipeline folder whose ``diffalign_sampling.json`` sets ``max_sequence_length`` (shapes-sd3: 16)
    #: gets that value, the one its sampling settings use.
    max_sequence_length: int = 256
    #: timestep density: diffusers' ``weighting_scheme`` ("logit_normal", "mode" or "none" = uniform).
    weighting_scheme: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs) -> "SD3Adapter":
        import os

        from diffalign.pipelines.generation import read_sampling_file

        adapter = super().from_pretrained(name_or_path, **kwargs)
        if os.path.isdir(str(name_or_path)):
            shipped = read_sampling_file(str(name_or_path)).get("max_sequence_length")
            if shipped is not None:
                adapter.max_sequence_length = int(shipped)
        return adapter

    # ------------------------------------------------------------------ schedule
    @property
    def noise_scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        """The training scheduler: built once from the pipeline scheduler's config, never
        ``set_timesteps``-ed, so its ``timesteps`` are the shifted training grid."""
        sched = self.__dict__.get("_noise_scheduler")
        source = self.pipe.scheduler.config
        if sched is None or self.__dict__.get("_noise_scheduler_source") is not source:
            sched = FlowMatchEulerDiscreteScheduler.from_config(source)
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

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """CLIP-L/CLIP-G/T5 embeddings via the pipeline's ``encode_prompt`` (no CFG doubling)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return PromptEmbeds({"prompt_embeds": embeds.to(self.dtype), "pooled_prompt_embeds": pooled.to(self.dtype)})

    # ------------------------------------------------------------------ latents
    def _vae_shift(self) -> float:
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> ``(z - shift_factor) * scaling_factor`` (a posterior sample)."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"SD3 encode_pixels takes [B, 3, H, W] RGB, got {tuple(pixels.shape)}")
        x = pixels.to(device=self.vae.device, dtype=self.vae.dtype) * 2 - 1
        z = self.vae.encode(x).latent_dist.sample(generator)
        return ((z - self._vae_shift()) * self.vae.config.scaling_factor).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> [B, 3, H, W] RGB in [0, 1] (differentiable)."""
        z = latents.to(self.vae.dtype) / self.vae.config.scaling_factor + self._vae_shift()
        image = self.vae.decode(z, return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1)

    def latent_shape(self, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
        if num_frames is not None:
            raise ValueError("SD3 generates images; num_frames must be None")
        factor = self.pipe.vae_scale_factor * self.pipe.patch_size
        if height % factor or width % factor:
            raise ValueError(f"SD3 height and width must be multiples of {factor}, got {height}x{width}")
        vae_factor = self.pipe.vae_scale_factor
        return (self.denoiser.config.in_channels, height // vae_factor, width // vae_factor)

    # ------------------------------------------------------------------ training distribution
    def sample_timesteps(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """``sigma * 1000`` float timesteps from the logit-normal density on the shifted training grid."""
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
        t = torch.as_tensor(timesteps, device=noisy.device)
        if t.ndim == 0:
            t = t.expand(noisy.shape[0])
        sigma = self.sigmas(t, noisy.ndim, device=noisy.device)
        return (noisy.float() - sigma * model_output.float()).to(noisy.dtype)

    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """The MMDiT velocity prediction ``transformer(x, context, pooled, t)``."""
        t = torch.as_tensor(timesteps, device=noisy_latents.device)
        if t.ndim == 0:
            t = t.expand(noisy_latents.shape[0])
        return self.network(
            hidden_states=noisy_latents.to(self.dtype),
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            pooled_projections=cond["pooled_prompt_embeds"].to(self.dtype),
            timestep=t,
            return_dict=False,
        )[0]

    # ------------------------------------------------------------------ sampling
    def sampling_scheduler(self, num_inference_steps: int, *, height: int | None = None, width: int | None = None):
        """A fresh ``FlowMatchEulerDiscreteScheduler`` (pipeline config) after ``set_timesteps``.

        With ``use_dynamic_shifting`` the shift ``mu`` follows the pipeline's rule for the image
        sequence length at ``height`` x ``width`` (default resolution when not given).
        """
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        sched = FlowMatchEulerDiscreteScheduler.from_config(self.pipe.scheduler.config)
        kwargs = {}
        if sched.config.get("use_dynamic_shifting", False):
            side = self.default_resolution()
            tokens = ((height or side) // self.pipe.vae_scale_factor // self.pipe.patch_size) * (
                (width or side) // self.pipe.vae_scale_factor // self.pipe.patch_size
            )
            c = sched.config
            kwargs["mu"] = calculate_shift(
                tokens, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                c.get("base_shift", 0.5), c.get("max_shift", 1.16),
            )
        sched.set_timesteps(num_inference_steps, device=self.device, **kwargs)
        return sched

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


__all__ = ["SD3Adapter"]
