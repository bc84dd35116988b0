"""Qwen-Image (``QwenImagePipeline``): a 20B MMDiT on rectified flow with a Qwen2.5-VL text encoder
and packed latents.

- Conditioning: the last hidden states of Qwen2.5-VL over the pipeline's prompt template (its
  34-token system prefix dropped), through the pipeline's own ``encode_prompt``. Prompts have
  different lengths; the adapter pads each to ``max_sequence_length`` tokens with zeros and keeps
  ``prompt_embeds_mask`` (the transformer masks the padding out of the joint attention, so the
  output is the pipeline's), which makes the embeddings cacheable per prompt and batchable.
  The text encoder is large (7B): encode once and cache (the offline trainer's cache, the online
  trainers' prompt memo), then offload it.
- Latents: the adapter keeps [B, 16, H/8, W/8] with the VAE's per-channel normalisation
  ``z = (posterior_sample - latents_mean) / latents_std`` (the VAE is Wan-style 3D: images are
  one-frame videos); ``forward`` packs 2x2 patches (``in_channels`` 64) and passes ``img_shapes``.
  The pipeline has no ``patch_size`` attribute: the packing comes from the transformer config.
- Schedule: the pipeline's sigmas ``linspace(1, 1/N, N)`` with the resolution-dependent shift from
  the packed sequence length; CFG is the pipeline's ``true_cfg_scale`` against a negative prompt
  (the empty prompt here), without the pipeline's renormalisation of the guided prediction.
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import QwenImagePipeline

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.flow import FlowMatchFamilyMixin
from diffalign.pipelines.latents import ImageLatentsMixin, PackedLatentsMixin, mean_std_stats


class QwenImageAdapter(PackedLatentsMixin, ImageLatentsMixin, FlowMatchFamilyMixin, PipelineAdapter):
    """Adapter for ``QwenImagePipeline`` (Qwen-Image, Qwen-Image-2512)."""

    family = "qwenimage"
    display_name = "Qwen-Image"
    pipeline_class = QwenImagePipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    #: the joint attention's image and text projections (diffusers' Qwen-Image LoRA script).
    default_lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
    #: text tokens per prompt (the pipeline's default truncation; embeddings are padded to it).
    max_sequence_length: int = 512
    linspace_sigmas = True

    @property
    def pack(self) -> int:  # QwenImagePipeline has no patch_size: the transformer config has it
        return int(self.denoiser.config.patch_size)

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """Qwen2.5-VL embeddings [B, L, D] padded to ``max_sequence_length`` and their mask [B, L]."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, mask = self.pipe.encode_prompt(prompt=prompts, device=self.device,
                                               max_sequence_length=self.max_sequence_length)
        b, n, d = embeds.shape
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.long, device=embeds.device)
        pad = self.max_sequence_length - n
        embeds = torch.cat([embeds, embeds.new_zeros(b, pad, d)], dim=1)
        mask = torch.cat([mask.long(), mask.new_zeros(b, pad).long()], dim=1)
        return PromptEmbeds({"prompt_embeds": embeds.to(self.dtype), "prompt_embeds_mask": mask})

    # ------------------------------------------------------------------ latents
    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> [B, 16, h, w] normalised latents (a posterior sample)."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"Qwen-Image encode_pixels takes [B, 3, H, W] RGB, got {tuple(pixels.shape)}")
        x = (pixels.to(device=self.vae.device, dtype=self.vae.dtype) * 2 - 1).unsqueeze(2)
        z = self.vae.encode(x).latent_dist.sample(generator)
        mean, std = mean_std_stats(self.vae, z)
        return ((z - mean) / std)[:, :, 0].to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 16, h, w] -> [B, 3, H, W] RGB in [0, 1] (the pipeline's decode; differentiable)."""
        z = latents.to(self.vae.dtype).unsqueeze(2)
        mean, std = mean_std_stats(self.vae, z)
        image = self.vae.decode(z * std + mean, return_dict=False)[0][:, :, 0]
        return (image / 2 + 0.5).clamp(0, 1)

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """Velocity for [B, C, h, w] latents: pack, ``transformer(x, t / 1000, text, mask, img_shapes)``, unpack."""
        b, _, h, w = self.image_latent_dims(noisy_latents)
        t = self.batch_timesteps(timesteps, noisy_latents)
        out = self.network(
            hidden_states=self.pack_latents(noisy_latents.to(self.dtype)),
            timestep=t.to(self.dtype) / 1000,
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            encoder_hidden_states_mask=cond["prompt_embeds_mask"],
            img_shapes=[[(1, h // self.pack, w // self.pack)]] * b,
            return_dict=False,
        )[0]
        return self.unpack_latents(out, h, w)


__all__ = ["QwenImageAdapter"]
