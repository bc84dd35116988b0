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

from typing import Sequence

import torch
from diffusers import StableDiffusion3Pipeline

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.flow import MMDIT_LORA_TARGETS, FlowMatchFamilyMixin
from diffalign.pipelines.latents import ShiftScaleLatentsMixin


class SD3Adapter(ShiftScaleLatentsMixin, FlowMatchFamilyMixin, PipelineAdapter):
    """Adapter for ``StableDiffusion3Pipeline`` (SD3-medium, SD3.5-medium/large)."""

    family = "sd3"
    display_name = "SD3"
    pipeline_class = StableDiffusion3Pipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    #: Flow-GRPO's SD3 LoRA targets: the joint attention's image and context projections.
    default_lora_targets = MMDIT_LORA_TARGETS
    #: T5 tokens per prompt (the diffusers pipeline's default, so ``generate`` conditions alike); a
    #: pipeline folder whose ``diffalign_sampling.json`` sets ``max_sequence_length`` (shapes-sd3: 16)
    #: gets that value, the one its sampling settings use.
    max_sequence_length: int = 256

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

    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """The MMDiT velocity prediction ``transformer(x, context, pooled, t)``."""
        t = self.batch_timesteps(timesteps, noisy_latents)
        return self.network(
            hidden_states=noisy_latents.to(self.dtype),
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            pooled_projections=cond["pooled_prompt_embeds"].to(self.dtype),
            timestep=t,
            return_dict=False,
        )[0]

    # ------------------------------------------------------------------ sampling
    def image_seq_len(self, height: int, width: int) -> int:
        """Image tokens at ``height`` x ``width`` (SD3.5's resolution-dependent shift when the
        scheduler has ``use_dynamic_shifting``)."""
        factor = self.pipe.vae_scale_factor * self.pipe.patch_size
        return (height // factor) * (width // factor)


__all__ = ["SD3Adapter"]
