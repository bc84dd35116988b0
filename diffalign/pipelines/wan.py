"""Wan 2.1 / 2.2 text-to-video (``WanPipeline``: Wan2.1-T2V-1.3B/14B, Wan2.2-TI2V-5B): a video DiT on
rectified flow with a 3D causal VAE.

- Conditioning: UMT5 through the pipeline's ``encode_prompt`` (``max_sequence_length`` 512 tokens,
  padded with zeros after each prompt's length); the negative prompt defaults to the empty prompt,
  as in the pipeline.
- Latents: ``[B, F, C, h, w]`` (frames on dim 1, so DenseDPO's ``training_errors(segments=S)``
  splits time); pixels ``[B, F, 3, H, W]`` RGB in [0, 1] with ``F = 1 + 4k`` (the causal VAE keeps
  frame 0 and compresses the rest 4x in time, 8x in space; 16x for Wan2.2's VAE). Normalisation as
  the pipeline's decode inverts it: ``z = (posterior_sample - latents_mean) / latents_std``.
  ``model.vae_tiling: true`` turns on the VAE's spatial tiling for large videos.
- Schedule: flow matching with the model's ``shift`` (Wan's ``flow_shift``: 3.0 at 480p, 5.0 at
  720p). Real checkpoints ship ``UniPCMultistepScheduler``; training and the sampling chain use the
  ``FlowMatchEulerDiscreteScheduler`` with the same shift (Flow-GRPO / DanceGRPO sample Wan with Euler
  SDE steps). Wan2.2-TI2V-5B's per-token timesteps (``expand_timesteps``) are built in ``forward``.
- Wan2.2-A14B's two experts (``transformer_2`` with a ``boundary_ratio``) are not supported yet.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.flow import FlowMatchFamilyMixin
from diffalign.pipelines.latents import VideoFactorsMixin, mean_std_stats


class WanAdapter(VideoFactorsMixin, FlowMatchFamilyMixin, PipelineAdapter):
    """Adapter for ``WanPipeline`` (text-to-video)."""

    family = "wan"
    pipeline_class = WanPipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    modality = "video"
    #: the self- and cross-attention projections of every block (diffusers' Wan LoRA scripts).
    default_lora_targets = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                            "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")
    #: UMT5 tokens per prompt (the pipeline's default).
    max_sequence_length: int = 512
    #: ``(height, width, num_frames)`` when the pipeline folder says nothing (Wan2.1's 480p, 81 frames).
    default_video_size: tuple[int, int, int] = (480, 832, 81)

    def __init__(self, pipe, device=None, dtype=None):
        super().__init__(pipe, device=device, dtype=dtype)
        if getattr(pipe, "transformer_2", None) is not None:
            raise ValueError(
                "WanPipeline with transformer_2 (Wan2.2-A14B's two experts) is not supported yet; "
                "Wan2.1 and Wan2.2-TI2V-5B are"
            )

    # ------------------------------------------------------------------ sizes
    def apply_recorded_settings(self, settings: dict) -> None:
        """Also take the folder's recorded ``height`` / ``width`` / ``num_frames`` as the default size: a Wan
        transformer's config does not record one (shapes-wan's 32x32 clips of 9 frames)."""
        super().apply_recorded_settings(settings)
        if settings.get("height") and settings.get("width"):
            frames = int(settings.get("num_frames") or self.default_video_size[2])
            self.default_video_size = (int(settings["height"]), int(settings["width"]), frames)

    def default_size(self) -> tuple[int, int, int]:
        return self.default_video_size

    def default_resolution(self) -> int:
        return self.default_size()[0]

    def latent_shape(self, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
        num_frames = num_frames or self.default_size()[2]
        if (num_frames - 1) % self.temporal_factor:
            raise ValueError(f"Wan num_frames must be 1 + {self.temporal_factor}k, got {num_frames}")
        factor = self.spatial_factor * self.denoiser.config.patch_size[1]
        if height % factor or width % factor:
            raise ValueError(f"Wan height and width must be multiples of {factor}, got {height}x{width}")
        frames = (num_frames - 1) // self.temporal_factor + 1
        return (frames, self.denoiser.config.in_channels, height // self.spatial_factor, width // self.spatial_factor)

    # ------------------------------------------------------------------ schedule
    def flow_scheduler_config(self) -> dict[str, Any]:
        """The pipeline's flow-matching config, or ``shift = flow_shift`` of its UniPC scheduler."""
        config = self.pipe.scheduler.config
        if isinstance(self.pipe.scheduler, FlowMatchEulerDiscreteScheduler):
            return dict(config)
        return {"num_train_timesteps": config.get("num_train_timesteps", 1000),
                "shift": float(config.get("flow_shift", None) or 1.0)}

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """UMT5 embeddings [B, 512, D] via the pipeline's ``encode_prompt`` (no CFG doubling)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, _ = self.pipe.encode_prompt(
            prompt=prompts, do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
            device=self.device,
        )
        return PromptEmbeds({"prompt_embeds": embeds.to(self.dtype)})

    # ------------------------------------------------------------------ latents
    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, F, 3, H, W] RGB in [0, 1] -> [B, F', C, h, w] normalised latents (a posterior sample)."""
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"Wan encode_pixels takes [B, F, 3, H, W] RGB video, got {tuple(pixels.shape)}")
        video = (pixels.to(device=self.vae.device, dtype=self.vae.dtype) * 2 - 1).permute(0, 2, 1, 3, 4)
        z = self.vae.encode(video).latent_dist.sample(generator)
        mean, std = mean_std_stats(self.vae, z)
        return ((z - mean) / std).permute(0, 2, 1, 3, 4).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, F', C, h, w] -> [B, F, 3, H, W] RGB in [0, 1] (the pipeline's decode; differentiable)."""
        z = latents.to(self.vae.dtype).permute(0, 2, 1, 3, 4)
        mean, std = mean_std_stats(self.vae, z)
        video = self.vae.decode(z * std + mean, return_dict=False)[0]
        return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """The transformer's velocity for [B, F, C, h, w] latents (it takes [B, C, F, h, w])."""
        if noisy_latents.ndim != 5:
            raise ValueError(f"Wan latents are [B, F, C, H, W], got {tuple(noisy_latents.shape)}")
        b, f, _, h, w = noisy_latents.shape
        t = self.batch_timesteps(timesteps, noisy_latents)
        if self.pipe.config.get("expand_timesteps", False):  # Wan2.2-TI2V: one timestep per patch token
            _, ph, pw = self.denoiser.config.patch_size
            t = t[:, None].expand(b, f * (h // ph) * (w // pw))
        out = self.network(
            hidden_states=noisy_latents.to(self.dtype).permute(0, 2, 1, 3, 4),
            timestep=t,
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            return_dict=False,
        )[0]
        return out.permute(0, 2, 1, 3, 4)


__all__ = ["WanAdapter"]
