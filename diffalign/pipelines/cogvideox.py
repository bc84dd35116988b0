"""CogVideoX (``CogVideoXPipeline``): text-to-video DiT on a v-prediction DDPM schedule.

- Conditioning: T5 via the pipeline's ``encode_prompt`` (``max_sequence_length`` 226 tokens).
- Latents: ``[B, F, C, H, W]`` as the transformer and diffusers' LoRA script use them; pixels are
  ``[B, F, 3, H, W]`` RGB in [0, 1] with ``F = 1 + 4k`` frames (the causal VAE keeps frame 0 and
  compresses the rest 4x in time): ``z = vae.encode(video).sample() * scaling_factor``.
- Training distribution and sampling come from ``DDPMFamilyMixin`` with CogVideoX's own DDIM
  scheduler class, whose ``alphas_cumprod`` carry the SNR shift (``snr_shift_scale``) and the
  zero-terminal-SNR rescale: uniform integer timesteps, v-prediction target, DDIM-with-eta steps.
- The forward passes the 3D rotary embeddings the pipeline builds when the transformer uses them
  (CogVideoX-5B, 1.5), sized from the latents.
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.ddpm import DDPMFamilyMixin
from diffalign.pipelines.latents import VideoFactorsMixin


class CogVideoXAdapter(VideoFactorsMixin, DDPMFamilyMixin, PipelineAdapter):
    """Adapter for ``CogVideoXPipeline`` (CogVideoX-2B/5B, 1.5)."""

    family = "cogvideox"
    pipeline_class = CogVideoXPipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    modality = "video"
    training_scheduler_class = CogVideoXDDIMScheduler
    sampling_scheduler_class = CogVideoXDDIMScheduler
    #: T5 tokens per prompt (the pipeline's default and CogVideoX's training length); a pipeline folder
    #: whose ``diffalign_sampling.json`` sets ``max_sequence_length`` (shapes-cogvideox) gets that value.
    max_sequence_length: int = 226

    # ------------------------------------------------------------------ sizes
    def default_size(self) -> tuple[int, int, int]:
        """``(height, width, num_frames)`` the model was trained at (e.g. 480, 720, 49)."""
        cfg = self.denoiser.config
        return cfg.sample_height * self.spatial_factor, cfg.sample_width * self.spatial_factor, cfg.sample_frames

    def default_resolution(self) -> int:
        """The default height in pixels (CogVideoX is not square: see ``default_size``)."""
        return self.default_size()[0]

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for ``num_frames`` pixel frames, padded to CogVideoX 1.5's ``patch_size_t``
        as the pipeline pads them (``decode_latents`` decodes every latent frame it is given; the
        pipeline drops the leading padded frames before decoding)."""
        if (num_frames - 1) % self.temporal_factor:
            raise ValueError(f"CogVideoX num_frames must be 1 + {self.temporal_factor}k, got {num_frames}")
        frames = (num_frames - 1) // self.temporal_factor + 1
        p_t = self.denoiser.config.patch_size_t
        if p_t is not None and frames % p_t:
            frames += p_t - frames % p_t
        return frames

    def latent_shape(self, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
        factor = self.spatial_factor * self.denoiser.config.patch_size
        if height % factor or width % factor:
            raise ValueError(f"CogVideoX height and width must be multiples of {factor}, got {height}x{width}")
        frames = self.latent_frames(num_frames or self.default_size()[2])
        return (frames, self.denoiser.config.in_channels, height // self.spatial_factor, width // self.spatial_factor)

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """T5 embeddings [B, 226, D] via the pipeline's ``encode_prompt`` (no CFG doubling)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, _ = self.pipe.encode_prompt(
            prompt=prompts,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
            dtype=self.dtype,
        )
        return PromptEmbeds({"prompt_embeds": embeds})

    # ------------------------------------------------------------------ latents
    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, F, 3, H, W] RGB in [0, 1] -> [B, F', C, h, w] scaled latents (a posterior sample)."""
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"CogVideoX encode_pixels takes [B, F, 3, H, W] RGB video, got {tuple(pixels.shape)}")
        video = (pixels.to(device=self.vae.device, dtype=self.vae.dtype) * 2 - 1).permute(0, 2, 1, 3, 4)
        z = self.vae.encode(video).latent_dist.sample(generator) * self.vae.config.scaling_factor
        return z.permute(0, 2, 1, 3, 4).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, F', C, h, w] scaled latents -> [B, F, 3, H, W] RGB in [0, 1] (the pipeline's decode)."""
        video = self.pipe.decode_latents(latents.to(self.vae.dtype))  # [B, 3, F, H, W] in [-1, 1]
        return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)

    # ------------------------------------------------------------------ network
    def rotary_embeddings(self, latents: torch.Tensor):
        """``(cos, sin)`` 3D rotary tables for latents [B, F, C, h, w], or None when the transformer
        uses learned/sincos positions (CogVideoX-2B). Cached per size and device."""
        if not self.denoiser.config.use_rotary_positional_embeddings:
            return None
        _, frames, _, h, w = latents.shape
        key = (frames, h, w, str(latents.device))
        cache = self.__dict__.setdefault("_rotary_cache", {})
        if key not in cache:
            cache[key] = self.pipe._prepare_rotary_positional_embeddings(
                h * self.spatial_factor, w * self.spatial_factor, frames, latents.device
            )
        return cache[key]

    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """The transformer's v-prediction for [B, F, C, h, w] latents."""
        if noisy_latents.ndim != 5:
            raise ValueError(f"CogVideoX latents are [B, F, C, H, W], got {tuple(noisy_latents.shape)}")
        t = torch.as_tensor(timesteps, device=noisy_latents.device)
        if t.ndim == 0:
            t = t.expand(noisy_latents.shape[0])
        return self.network(
            hidden_states=noisy_latents.to(self.dtype),
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            timestep=t,
            image_rotary_emb=self.rotary_embeddings(noisy_latents),
            return_dict=False,
        )[0]


__all__ = ["CogVideoXAdapter"]
