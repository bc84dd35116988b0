"""Z-Image (``ZImagePipeline``: Z-Image-Turbo, Z-Image): a single-stream DiT on rectified flow with a
Qwen3 text encoder and FLUX.1's VAE.

- Conditioning: the second-to-last hidden states of Qwen3 (``Qwen3Model``) over the chat template,
  through the pipeline's own ``encode_prompt``, which returns one tensor per prompt holding only its
  real tokens. The adapter pads each to ``max_sequence_length`` with zeros and keeps
  ``prompt_embeds_mask``; ``forward`` hands the transformer the unpadded list again, so the output is
  the pipeline's and the embeddings cache per prompt and batch. Qwen3-4B (8 GB in bf16): encode once
  and cache, then offload it.
- Guidance: the pipeline writes CFG as ``pos + g (pos - neg)`` (``guidance_scale`` g, default 5.0,
  0 = off) against the empty prompt. diffalign's ``guidance_scale`` is the usual ``w`` of
  ``neg + w (pos - neg)`` (1 = off), so the pipeline's ``g`` is ``w = g + 1``: the pipeline's 5.0 is
  diffalign's 6.0. Z-Image-Turbo is step-distilled and samples without CFG (``guidance_scale`` 0 in
  the pipeline, 1 here). The pipeline's ``cfg_normalization`` and ``cfg_truncation`` are left at
  their defaults (off).
- Latents: [B, 16, H/8, W/8] with ``z = (sample - shift_factor) * scaling_factor`` (FLUX.1's VAE); the
  transformer patchifies 2x2 itself and takes a list of [C, 1, h, w] samples.
- Time: the transformer's time runs the other way, ``(1000 - t) / 1000 = 1 - sigma``, and it predicts
  the negated velocity; ``forward`` returns the velocity ``noise - x0`` the flow families train.
- Schedule: the pipeline's sigmas ``linspace(1, 1/N, N)`` with the scheduler's shift (the dynamic
  shift ``mu`` of the packed sequence length when the scheduler has ``use_dynamic_shifting``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import ZImagePipeline

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.flow import FlowMatchFamilyMixin
from diffalign.pipelines.latents import ShiftScaleLatentsMixin


class ZImageAdapter(ShiftScaleLatentsMixin, FlowMatchFamilyMixin, PipelineAdapter):
    """Adapter for ``ZImagePipeline`` (Z-Image, Z-Image-Turbo)."""

    family = "zimage"
    display_name = "Z-Image"
    pipeline_class = ZImagePipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    #: Qwen3 tokens per prompt (the pipeline's default truncation; embeddings are padded to it).
    max_sequence_length: int = 512
    linspace_sigmas = True
    #: the transformer's 2x2 patch (``ZImagePipeline`` passes ``patch_size=2``).
    patch: int = 2

    @property
    def spatial_multiple(self) -> int:
        return int(self.pipe.vae_scale_factor) * self.patch

    def default_resolution(self) -> int:
        """The pipeline's 1024 px (``ZImagePipeline`` has no ``default_sample_size``; one set on it counts)."""
        size = getattr(self.pipe, "default_sample_size", None)
        return int(size * self.pipe.vae_scale_factor) if size else 1024

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """Qwen3 embeddings [B, L, D] padded to ``max_sequence_length`` and their mask [B, L]."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, _ = self.pipe.encode_prompt(prompt=prompts, device=self.device, do_classifier_free_guidance=False,
                                            max_sequence_length=self.max_sequence_length)
        n, d = self.max_sequence_length, embeds[0].shape[-1]
        padded = embeds[0].new_zeros(len(embeds), n, d)
        mask = torch.zeros(len(embeds), n, dtype=torch.long, device=padded.device)
        for i, e in enumerate(embeds):
            padded[i, : len(e)], mask[i, : len(e)] = e, 1
        return PromptEmbeds({"prompt_embeds": padded.to(self.dtype), "prompt_embeds_mask": mask})

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """Velocity for [B, C, h, w]: ``-transformer([x_i], (1000 - t) / 1000, [text_i])``."""
        self.image_latent_dims(noisy_latents)
        t = self.batch_timesteps(timesteps, noisy_latents).float()
        embeds, mask = cond["prompt_embeds"].to(self.dtype), cond["prompt_embeds_mask"].bool()
        out = self.network(
            list(noisy_latents.to(self.dtype).unsqueeze(2).unbind(0)),
            (1000 - t) / 1000,
            [e[m] for e, m in zip(embeds, mask)],
            patch_size=self.patch,
            return_dict=False,
        )[0]
        return -torch.stack(out).squeeze(2)

    def generate(self, prompts, **kwargs):
        """The pipeline's ``__call__`` on a copy of ``prompts`` (its ``encode_prompt`` rewrites the list in place)."""
        return self.pipe(prompt=[prompts] if isinstance(prompts, str) else list(prompts), **kwargs)


__all__ = ["ZImageAdapter"]
