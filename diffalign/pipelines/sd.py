"""``sd``: Stable Diffusion 1.x / 2.x (``StableDiffusionPipeline``, UNet, epsilon or v-prediction)."""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import StableDiffusionPipeline

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.ddpm import DDPMFamilyMixin


class SDAdapter(DDPMFamilyMixin, PipelineAdapter):
    """Adapter for ``StableDiffusionPipeline``: one CLIP text encoder, a ``UNet2DConditionModel``
    trained with the DDPM schedule, and an ``AutoencoderKL`` (latents scaled by
    ``vae.config.scaling_factor``, shifted by ``shift_factor`` when the VAE has one)."""

    family = "sd"
    pipeline_class = StableDiffusionPipeline
    denoiser_name = "unet"

    # ------------------------------------------------------------------ conditioning
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """CLIP last hidden states ([B, L, D], L = ``tokenizer.model_max_length``) under the key
        ``prompt_embeds``, computed by the pipeline's own ``encode_prompt``."""
        prompts = _as_prompt_list(prompts)
        embeds, _ = self.pipe.encode_prompt(
            prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return PromptEmbeds({"prompt_embeds": embeds})

    # ------------------------------------------------------------------ latents
    @property
    def vae_dtype(self) -> torch.dtype:
        return self.vae.dtype

    def _latent_scale_shift(self) -> tuple[float, float]:
        config = self.vae.config
        shift = getattr(config, "shift_factor", None)
        return float(config.scaling_factor), float(shift) if shift is not None else 0.0

    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """RGB in [0, 1], [B, 3, H, W] -> ``(z - shift_factor) * scaling_factor`` with z sampled from
        the VAE posterior (``generator`` makes it deterministic)."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"encode_pixels expects RGB images [B, 3, H, W], got shape {tuple(pixels.shape)}")
        scale, shift = self._latent_scale_shift()
        x = (pixels.to(device=self.vae.device, dtype=self.vae_dtype) * 2 - 1)
        z = self.vae.encode(x).latent_dist.sample(generator)
        return ((z - shift) * scale).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> RGB in [0, 1] (differentiable; clamped like diffusers' postprocess)."""
        scale, shift = self._latent_scale_shift()
        z = latents.to(device=self.vae.device, dtype=self.vae_dtype) / scale + shift
        image = self.vae.decode(z).sample
        return (image / 2 + 0.5).clamp(0, 1)

    @property
    def latent_channels(self) -> int:
        return int(self.denoiser.config.in_channels)

    def latent_shape(self, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
        if num_frames is not None:
            raise ValueError(f"the {self.family} family makes images; num_frames must be None, got {num_frames}")
        factor = int(self.pipe.vae_scale_factor)
        if height % factor or width % factor:
            raise ValueError(f"height and width must be multiples of {factor} for {self.family}, got {height}x{width}")
        return (self.latent_channels, height // factor, width // factor)

    def default_resolution(self) -> int:
        size = self.denoiser.config.sample_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        return int(size) * int(self.pipe.vae_scale_factor)

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        return self.network(
            noisy_latents, timesteps, encoder_hidden_states=cond["prompt_embeds"].to(self.dtype), return_dict=False
        )[0]


def _as_prompt_list(prompts: Sequence[str] | str) -> list[str]:
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(prompts)
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise TypeError(f"prompts must be strings; item {bad[0]} is {type(prompts[bad[0]]).__name__}")
    return prompts


__all__ = ["SDAdapter"]
