"""``sdxl``: Stable Diffusion XL (``StableDiffusionXLPipeline``: two CLIP text encoders, pooled text
embeddings and micro-conditioning time ids fed to the UNet through ``added_cond_kwargs``)."""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from diffusers import StableDiffusionXLPipeline

from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.sd import SDAdapter, _as_prompt_list


class SDXLAdapter(SDAdapter):
    """Adapter for ``StableDiffusionXLPipeline``.

    Conditioning keys: ``prompt_embeds`` (penultimate hidden states of both encoders, concatenated),
    ``pooled_prompt_embeds`` (the projected pooled output of ``text_encoder_2``) and
    ``add_time_ids`` ([B, 6]: original size, crop top-left, target size) so cached embeddings carry
    the micro-conditioning. Time ids left at their default (both sizes the default resolution, no
    crop) follow the size of the latents they condition, as the pipeline's own ``original_size =
    target_size = (height, width)``: samples and training steps at 512 px or 768x1344 get that size's
    ids, not 1024's. Ids encoded with other sizes are kept as given. The VAE overflows in fp16: when
    ``vae.config.force_upcast`` is true it is kept in fp32 whatever dtype the rest of the pipeline uses.
    """

    family = "sdxl"
    pipeline_class = StableDiffusionXLPipeline

    def __init__(self, pipe, device=None, dtype=None):
        super().__init__(pipe, device=device, dtype=dtype)
        self._upcast_vae()

    # ------------------------------------------------------------------ conditioning
    def encode_prompt(
        self,
        prompts: Sequence[str],
        *,
        original_size: tuple[int, int] | None = None,
        target_size: tuple[int, int] | None = None,
        crops_coords_top_left: tuple[int, int] = (0, 0),
    ) -> PromptEmbeds:
        """Both encoders through the pipeline's own ``encode_prompt``, plus ``add_time_ids``.

        ``original_size`` / ``target_size`` are (height, width) and default to the default
        resolution; ``crops_coords_top_left`` defaults to (0, 0) as in diffusers.
        """
        prompts = _as_prompt_list(prompts)
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return PromptEmbeds(
            {
                "prompt_embeds": embeds,
                "pooled_prompt_embeds": pooled,
                "add_time_ids": self.add_time_ids(
                    len(prompts), original_size, target_size, crops_coords_top_left, dtype=embeds.dtype
                ),
            }
        )

    def add_time_ids(
        self,
        batch_size: int,
        original_size: tuple[int, int] | None = None,
        target_size: tuple[int, int] | None = None,
        crops_coords_top_left: tuple[int, int] = (0, 0),
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """SDXL micro-conditioning [batch_size, 6] exactly as the pipeline builds it."""
        side = self.default_resolution()
        original_size = tuple(original_size or (side, side))
        target_size = tuple(target_size or (side, side))
        ids = self.pipe._get_add_time_ids(
            original_size,
            tuple(crops_coords_top_left),
            target_size,
            dtype=dtype or self.dtype,
            text_encoder_projection_dim=int(self.pipe.text_encoder_2.config.projection_dim),
        )
        return ids.to(self.device).repeat(batch_size, 1)

    def encode_negative_prompt(self, negative_prompt: str | None, batch_size: int) -> PromptEmbeds:
        """Like the pipeline: zeros when no negative prompt is given and ``force_zeros_for_empty_prompt``."""
        if negative_prompt is None and self.pipe.config.get("force_zeros_for_empty_prompt", False):
            cond = self.encode_prompt([""])
            zeros = PromptEmbeds(
                {
                    "prompt_embeds": torch.zeros_like(cond["prompt_embeds"]),
                    "pooled_prompt_embeds": torch.zeros_like(cond["pooled_prompt_embeds"]),
                    "add_time_ids": cond["add_time_ids"],
                }
            )
            return PromptEmbeds.cat([zeros] * batch_size)
        return super().encode_negative_prompt(negative_prompt, batch_size)

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        added = {
            "text_embeds": cond["pooled_prompt_embeds"].to(self.dtype),
            "time_ids": self.time_ids_for(noisy_latents, cond["add_time_ids"]).to(self.dtype),
        }
        return self.network(
            noisy_latents,
            timesteps,
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            added_cond_kwargs=added,
            return_dict=False,
        )[0]

    def time_ids_for(self, latents: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
        """``time_ids`` [B, 6] for ``latents`` of any size: rows left at the default resolution's ids
        become ``(H, W, 0, 0, H, W)`` of the latents' pixel size (what the pipeline uses at that size)."""
        size = (int(latents.shape[-2]) * self.pipe.vae_scale_factor, int(latents.shape[-1]) * self.pipe.vae_scale_factor)
        side = self.default_resolution()
        if size == (side, side):
            return time_ids
        default = self.add_time_ids(1, dtype=time_ids.dtype).to(time_ids.device)
        sized = self.add_time_ids(1, size, size, dtype=time_ids.dtype).to(time_ids.device)
        at_default = (time_ids == default).all(dim=-1, keepdim=True)
        return torch.where(at_default, sized, time_ids)

    # ------------------------------------------------------------------ VAE precision
    def _upcast_vae(self) -> None:
        if self.vae.dtype == torch.float16 and self.vae.config.get("force_upcast", False):
            self.vae.to(dtype=torch.float32)

    def to(self, device=None, dtype=None) -> "SDXLAdapter":
        super().to(device=device, dtype=dtype)
        self._upcast_vae()
        return self

    @contextlib.contextmanager
    def _vae_in_pipeline_dtype(self) -> Iterator[None]:
        """Hand the pipeline its VAE in the pipeline dtype (diffusers upcasts it itself when decoding)."""
        vae_dtype = self.vae.dtype
        if vae_dtype == self.dtype:
            yield
            return
        self.vae.to(dtype=self.dtype)
        try:
            yield
        finally:
            self.vae.to(dtype=vae_dtype)

    def generate(self, prompts, **kwargs):
        with self._vae_in_pipeline_dtype():
            return super().generate(prompts, **kwargs)


__all__ = ["SDXLAdapter"]
