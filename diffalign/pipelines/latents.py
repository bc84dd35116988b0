"""Image latents of the VAEs normalised by ``scaling_factor`` and ``shift_factor`` (SD3, FLUX.1):
``z = (posterior_sample - shift_factor) * scaling_factor`` and back, in the adapter's [B, C, h, w]
layout. A family sets ``display_name`` and, where the transformer sees fewer spatial positions than
the VAE makes (patches, 2x2 packing), ``latent_channels`` / ``spatial_multiple``."""
from __future__ import annotations

import torch


class ImageLatentsMixin:
    """``latent_shape`` of an image family (``[C, H / latent_divisor, W / latent_divisor]``, sizes
    checked against ``spatial_multiple``) and the check of 4D latents its ``forward`` takes."""

    display_name: str = "this family"

    @property
    def latent_divisor(self) -> int:
        """Pixels per latent position (the VAE factor; more when the adapter keeps patchified latents)."""
        return int(self.pipe.vae_scale_factor)

    def latent_shape(self, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
        if num_frames is not None:
            raise ValueError(f"{self.display_name} generates images; num_frames must be None")
        factor = self.spatial_multiple
        if height % factor or width % factor:
            raise ValueError(f"{self.display_name} height and width must be multiples of {factor}, got {height}x{width}")
        return (self.latent_channels, height // self.latent_divisor, width // self.latent_divisor)

    def image_seq_len(self, height: int, width: int) -> int:
        """Image tokens the transformer sees at ``height`` x ``width`` pixels (one per ``spatial_multiple``
        square: what the dynamic shift ``mu`` depends on)."""
        return (height // self.spatial_multiple) * (width // self.spatial_multiple)

    def image_latent_dims(self, latents: torch.Tensor) -> tuple[int, int, int, int]:
        """``(B, C, h, w)`` of 4D latents; anything else is a one-line ``ValueError``."""
        if latents.ndim != 4:
            raise ValueError(f"{self.display_name} latents are [B, C, H, W], got {tuple(latents.shape)}")
        return tuple(latents.shape)


class ShiftScaleLatentsMixin(ImageLatentsMixin):
    """``encode_pixels`` / ``decode_latents`` / ``latent_shape`` for a ``PipelineAdapter`` subclass."""

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


__all__ = ["ImageLatentsMixin", "ShiftScaleLatentsMixin"]


def mean_std_stats(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``latents_mean`` / ``latents_std`` of a Wan-style VAE (Wan, Qwen-Image), shaped
    [1, C, 1, 1, 1] like the VAE's 5D latents: ``z = (posterior_sample - mean) / std``."""
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(shape)
    return mean, std


class PackedLatentsMixin:
    """Latents the transformer sees as 2x2 patches packed into tokens (FLUX.1, Qwen-Image): the
    adapter keeps [B, C, h, w]; ``pack_latents`` / ``unpack_latents`` are the pipelines' packing."""

    #: side of the packed patches.
    pack: int = 2

    @property
    def latent_channels(self) -> int:
        return int(self.denoiser.config.in_channels) // self.pack**2

    @property
    def spatial_multiple(self) -> int:
        return int(self.pipe.vae_scale_factor) * self.pack

    def pack_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> the pipelines' packed [B, (h/2)(w/2), 4C] (channel-major 2x2 patches)."""
        b, c, h, w = latents.shape
        p = self.pack
        x = latents.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def unpack_latents(self, packed: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Packed [B, (h/2)(w/2), 4C] -> [B, C, h, w] (``h``, ``w``: latent size)."""
        b, _, d = packed.shape
        p = self.pack
        x = packed.view(b, h // p, w // p, d // (p * p), p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, d // (p * p), h, w)



class VideoFactorsMixin:
    """The causal video VAEs' compression (CogVideoX, Wan): ``spatial_factor`` and ``temporal_factor``
    as the pipelines record them."""

    @property
    def spatial_factor(self) -> int:
        return int(self.pipe.vae_scale_factor_spatial)

    @property
    def temporal_factor(self) -> int:
        return int(self.pipe.vae_scale_factor_temporal)


__all__ += ["PackedLatentsMixin", "VideoFactorsMixin", "mean_std_stats"]
