"""FLUX.2 [klein] (``Flux2KleinPipeline``: FLUX.2-klein-4B/9B and their undistilled -base models): an
MMDiT on rectified flow with a Qwen3 text encoder and a VAE whose latents are normalised by batch-norm
statistics.

- Conditioning: Qwen3 (``Qwen3ForCausalLM``) over the chat template, hidden states of layers 9, 18 and
  27 stacked into ``prompt_embeds`` [B, L, 3D], through the pipeline's own ``encode_prompt``. Prompts
  are padded to ``max_sequence_length`` (512) tokens and the padding is not masked, so the embeddings
  are fixed-length and cache per prompt as they are. The 4B model's Qwen3-4B (8 GB in bf16) is the
  largest piece after the transformer: encode once (the offline cache, the online prompt memo), then
  offload it. Text ids ``(0, 0, 0, l)`` and latent ids ``(0, row, column, 0)`` are built in ``forward``.
- Guidance: no guidance embedding. The undistilled -base models use classifier-free guidance against
  the empty prompt (``guidance_scale`` 4.0 in the pipeline); the step-distilled klein
  (``is_distilled`` in the pipeline config) runs without CFG, whatever ``guidance_scale`` is asked.
- Latents: the adapter keeps the transformer's layout [B, 4C, H/16, W/16]: the VAE's latents
  patchified 2x2 and normalised by the VAE's batch-norm running statistics
  ``(patchify(z) - bn.running_mean) / sqrt(bn.running_var + eps)`` (what the pipeline's ``latents=``
  takes); ``forward`` flattens them into tokens. ``vae_latents`` undoes both (the pipeline's
  ``output_type="latent"``).
- Schedule: the pipeline's sigmas ``linspace(1, 1/N, N)`` with the shift ``mu`` of FLUX.2's empirical
  rule, which depends on the image sequence length and the number of steps (``compute_empirical_mu``);
  training timesteps are the flow families' (logit-normal index into the unshifted training grid).
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import Flux2KleinPipeline
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.flow import MMDIT_LORA_TARGETS, FlowMatchFamilyMixin
from diffalign.pipelines.latents import ImageLatentsMixin


class Flux2KleinAdapter(ImageLatentsMixin, FlowMatchFamilyMixin, PipelineAdapter):
    """Adapter for ``Flux2KleinPipeline`` (FLUX.2 [klein])."""

    family = "flux2"
    display_name = "FLUX.2"
    pipeline_class = Flux2KleinPipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    #: the double blocks' joint attention (image and text projections) and the single blocks' fused
    #: q/k/v + MLP input projection.
    default_lora_targets = MMDIT_LORA_TARGETS + ("attn.to_qkv_mlp_proj",)
    #: Qwen3 tokens per prompt (the pipeline's default; every prompt is padded to it); a pipeline folder
    #: whose ``diffalign_sampling.json`` sets ``max_sequence_length`` (a shapes-world klein pipeline from ``python -m diffalign.shapes.pretrain --family flux2``: 40) gets that value.
    max_sequence_length: int = 512
    #: the Qwen3 hidden states stacked into the embeddings (the pipeline's default).
    text_encoder_out_layers: tuple[int, ...] = (9, 18, 27)
    linspace_sigmas = True

    def apply_recorded_settings(self, settings: dict) -> None:
        super().apply_recorded_settings(settings)
        if settings.get("height") and settings.get("width"):
            self.shipped_size = (int(settings["height"]), int(settings["width"]))

    #: ``(height, width)`` from the folder's ``diffalign_sampling.json`` (shapes-flux2: 64x64), else None:
    #: the klein pipeline's own default is 128 latent positions (1024 px for the real VAE, 512 px for
    #: the shapes VAE's factor 4), far from what a small pipeline was trained at.
    shipped_size: tuple[int, int] | None = None

    def default_size(self) -> tuple[int, int, int | None]:
        if self.shipped_size is not None:
            return self.shipped_size[0], self.shipped_size[1], None
        return super().default_size()

    def default_resolution(self) -> int:
        return self.shipped_size[0] if self.shipped_size is not None else super().default_resolution()

    @property
    def distilled(self) -> bool:
        """Step-distilled klein: no classifier-free guidance (the pipeline's ``is_distilled``)."""
        return bool(self.pipe.config.get("is_distilled", False))

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """Stacked Qwen3 hidden states [B, max_sequence_length, 3D] via the pipeline's ``encode_prompt``."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, _ = self.pipe.encode_prompt(prompt=prompts, device=self.device, max_sequence_length=self.max_sequence_length,
                                            text_encoder_out_layers=self.text_encoder_out_layers)
        return PromptEmbeds({"prompt_embeds": embeds.to(self.dtype)})

    # ------------------------------------------------------------------ latents
    def _bn_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(like.device, like.dtype)
        return mean, std

    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> [B, 4C, H/16, W/16]: a posterior sample, patchified, normalised."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"FLUX.2 encode_pixels takes [B, 3, H, W] RGB, got {tuple(pixels.shape)}")
        x = pixels.to(device=self.vae.device, dtype=self.vae.dtype) * 2 - 1
        z = self.pipe._patchify_latents(self.vae.encode(x).latent_dist.sample(generator))
        mean, std = self._bn_stats(z)
        return ((z - mean) / std).to(self.dtype)

    def vae_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The adapter's latents as the VAE decodes them (de-normalised, unpatchified) [B, C, H/8, W/8]:
        what the pipeline returns with ``output_type="latent"``."""
        mean, std = self._bn_stats(latents)
        return self.pipe._unpatchify_latents(latents * std + mean)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 4C, h, w] -> [B, 3, H, W] RGB in [0, 1] (the pipeline's decode; differentiable)."""
        image = self.vae.decode(self.vae_latents(latents.to(self.vae.dtype)), return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1)

    @property
    def latent_channels(self) -> int:
        return int(self.denoiser.config.in_channels)

    @property
    def spatial_multiple(self) -> int:
        return int(self.pipe.vae_scale_factor) * 2

    @property
    def latent_divisor(self) -> int:  # the adapter keeps the patchified latents: one position per 2x2 VAE latents
        return self.spatial_multiple

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """Velocity for [B, 4C, h, w]: tokens [B, hw, 4C], ``transformer(x, t / 1000, text, ids)``, back."""
        b, _, h, w = self.image_latent_dims(noisy_latents)
        t = self.batch_timesteps(timesteps, noisy_latents)
        embeds = cond["prompt_embeds"].to(self.dtype)
        out = self.network(
            hidden_states=self.pipe._pack_latents(noisy_latents.to(self.dtype)),
            timestep=t.to(self.dtype) / 1000,
            guidance=None,
            encoder_hidden_states=embeds,
            txt_ids=self.pipe._prepare_text_ids(embeds).to(noisy_latents.device),
            img_ids=self.pipe._prepare_latent_ids(noisy_latents).to(noisy_latents.device),
            return_dict=False,
        )[0]
        return out.permute(0, 2, 1).reshape(b, -1, h, w)

    def guided_forward(self, latents, timestep, cond, uncond=None, guidance_scale=1.0, detach_uncond=False):
        """CFG against the empty prompt, as the pipeline; none for the step-distilled klein."""
        if self.distilled:
            uncond, guidance_scale = None, 1.0
        return super().guided_forward(latents, timestep, cond, uncond, guidance_scale, detach_uncond)

    # ------------------------------------------------------------------ sampling
    def shift_mu(self, height: int, width: int, num_inference_steps: int, config) -> float:
        """FLUX.2's empirical shift: a function of the image sequence length and the number of steps."""
        return compute_empirical_mu(self.image_seq_len(height, width), num_inference_steps)


__all__ = ["Flux2KleinAdapter"]
