"""Image latents of the VAEs normalised by ``scaling_factor`` and ``shift_factor`` (SD3, FLUX.1):
``z = (posterior_sample - shift_factor) * scaling_factor`` and back, in the adapter's [B, C, h, w]
layout. A family sets ``display_name`` and, where the transformer sees fewer spatial positions than
the VAE makes (patches, 2x2 packing), ``latent_channels`` / ``spatial_multiple``."""
from __future__ import annotations

import torch


class ShiftScaleLatentsMixin:
    """``encode_pixels`` / ``decode_latents`` / ``latent_shape`` for a ``PipelineAdapter`` subclass."""

    display_name: str = "this family"

    @property
    def latent_channels(self) -> int:
        return int(self.denoiser.config.in_channels)

    @property
    def spatial_multiple(self) -> int:
        """Height and width must be multiples of this (VAE factor times the transformer's patch)."""
        return int(self.pipe.vae_scale_factor * self.pipe.patch_size)

    def _vae_shift(self) -> float:
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> ``(z - shift_factor) * scaling_factor`` (a posterior sample)."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"{self.display_name} encode_pixels takes [B, 3, H, W] RGB, got {tuple(pixels.shape)}")
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
            raise ValueError(f"{self.display_name} generates images; num_frames must be None")
        factor = self.spatial_multiple
        if height % factor or width % factor:
            raise ValueError(f"{self.display_name} height and width must be multiples of {factor}, got {height}x{width}")
        vae_factor = self.pipe.vae_scale_factor
        return (self.latent_channels, height // vae_factor, width // vae_factor)


__all__ = ["ShiftScaleLatentsMixin"]
