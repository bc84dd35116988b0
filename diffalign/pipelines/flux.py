"""FLUX.1 (``FluxPipeline``: FLUX.1-dev, FLUX.1-schnell, Krea): a guidance-distilled MMDiT on
rectified flow with packed latents.

- Conditioning: CLIP-L (pooled) + T5 (sequence) through the pipeline's ``encode_prompt``:
  ``prompt_embeds`` [B, L, D] and ``pooled_prompt_embeds`` [B, D_pool]; the text ids are zeros
  [L, 3], as the pipeline makes them, built in ``forward``.
- Guidance: FLUX.1-dev is guidance-distilled. Its transformer takes the guidance value as an input
  (``guidance_embeds``): ``embedded_guidance`` (3.5, the pipeline's ``guidance_scale`` default) is
  fed to it in training and sampling, and there is no classifier-free guidance by default
  (``true_cfg = False``: a trainer's ``guidance_scale`` is ignored; with ``true_cfg = True`` it is the
  pipeline's ``true_cfg_scale`` against the negative prompt).
- Latents: the adapter keeps the VAE's layout [B, 16, H/8, W/8] with ``z = (sample - shift_factor)
  * scaling_factor``; ``forward`` packs them into 2x2 patches [B, HW/256, 64] with the latent image
  ids (row, column) the pipeline builds, and unpacks the velocity.
- Schedule: the pipeline's sigmas ``linspace(1, 1/N, N)`` with the resolution-dependent shift ``mu``
  from the packed image sequence length; training timesteps follow diffusers'
  ``train_dreambooth_lora_flux.py`` (logit-normal index into the training grid) and the velocity target.
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import FluxPipeline

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.flow import MMDIT_LORA_TARGETS, FlowMatchFamilyMixin
from diffalign.pipelines.latents import PackedLatentsMixin, ShiftScaleLatentsMixin


class FluxAdapter(PackedLatentsMixin, ShiftScaleLatentsMixin, FlowMatchFamilyMixin, PipelineAdapter):
    """Adapter for ``FluxPipeline`` (FLUX.1-dev / -schnell)."""

    family = "flux"
    display_name = "FLUX.1"
    pipeline_class = FluxPipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    #: Flow-GRPO's FLUX LoRA targets: the double blocks' joint attention (image and text projections)
    #: and the single blocks' q/k/v.
    default_lora_targets = MMDIT_LORA_TARGETS
    #: the value fed to the guidance embedding of a guidance-distilled transformer (the pipeline's
    #: ``guidance_scale``; ignored by FLUX.1-schnell, which has no guidance embedding).
    embedded_guidance: float = 3.5
    #: classifier-free guidance against a negative prompt (the pipeline's ``true_cfg_scale``). False (the
    #: default: FLUX.1-dev is guidance-distilled): no CFG in training or sampling, whatever
    #: ``guidance_scale`` a trainer or ``sample`` passes; True: ``guidance_scale`` is ``true_cfg_scale``.
    true_cfg: bool = False
    #: T5 tokens per prompt (the pipeline's default).
    max_sequence_length: int = 512
    #: the pipeline's inference sigmas ``linspace(1, 1/N, N)``.
    linspace_sigmas = True

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """T5 sequence and CLIP pooled embeddings via the pipeline's ``encode_prompt``."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts, prompt_2=None, device=self.device, max_sequence_length=self.max_sequence_length
        )
        return PromptEmbeds({"prompt_embeds": embeds.to(self.dtype), "pooled_prompt_embeds": pooled.to(self.dtype)})

    # ------------------------------------------------------------------ ids
    def image_ids(self, h: int, w: int, device) -> torch.Tensor:
        """The latent image ids [(h/2)(w/2), 3] (0, row, column) of the pipeline."""
        return self.pipe._prepare_latent_image_ids(1, h // self.pack, w // self.pack, device, self.dtype)

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """Velocity for [B, C, h, w] latents: pack, ``transformer(x, t / 1000, guidance, text, ids)``, unpack."""
        b, _, h, w = self.image_latent_dims(noisy_latents)
        t = self.batch_timesteps(timesteps, noisy_latents)
        embeds = cond["prompt_embeds"].to(self.dtype)
        guidance = None
        if self.denoiser.config.guidance_embeds:
            guidance = torch.full((b,), float(self.embedded_guidance), device=noisy_latents.device, dtype=torch.float32)
        out = self.network(
            hidden_states=self.pack_latents(noisy_latents.to(self.dtype)),
            timestep=t.to(self.dtype) / 1000,
            guidance=guidance,
            pooled_projections=cond["pooled_prompt_embeds"].to(self.dtype),
            encoder_hidden_states=embeds,
            txt_ids=torch.zeros(embeds.shape[1], 3, device=embeds.device, dtype=self.dtype),
            img_ids=self.image_ids(h, w, noisy_latents.device),
            return_dict=False,
        )[0]
        return self.unpack_latents(out, h, w)

    def guided_forward(self, latents, timestep, cond, uncond=None, guidance_scale=1.0, detach_uncond=False):
        """The conditional velocity only unless ``true_cfg`` (then the base class's CFG)."""
        if not self.true_cfg:
            uncond, guidance_scale = None, 1.0
        return super().guided_forward(latents, timestep, cond, uncond, guidance_scale, detach_uncond)

    def generate(self, prompts, **kwargs):
        """The pipeline's ``__call__`` with the adapter's embedded guidance unless given."""
        kwargs.setdefault("guidance_scale", self.embedded_guidance)
        return self.pipe(prompt=prompts, **kwargs)


__all__ = ["FluxAdapter"]
