"""HunyuanVideo 1.5 text-to-video (``HunyuanVideo15Pipeline``: HunyuanVideo-1.5 480p/720p T2V): an
8.3B MMDiT on rectified flow with two text encoders and a causal video VAE.

- Conditioning, through the pipeline's own ``encode_prompt`` (fixed lengths, so the embeddings cache
  per prompt as they are): the third-to-last hidden states of Qwen2.5-VL's text model over the
  pipeline's chat template (system prefix cropped), padded to 1000 tokens with ``prompt_embeds_mask``;
  and ByT5 embeddings of the quoted text in the prompt (glyphs; zeros with an all-zero mask when the
  prompt quotes nothing), padded to 256 with ``prompt_embeds_mask_2``. Qwen2.5-VL-7B (15 GB in bf16) is
  the large one: encode once and cache, then offload it. The negative prompt is the empty prompt, as in
  the pipeline; its CFG (the pipeline's ``guider``, ``ClassifierFreeGuidance`` with the checkpoint's
  ``guidance_scale``) is the usual ``uncond + w (cond - uncond)`` with ``w`` the trainer's ``guidance_scale``.
- Latents: ``[B, F, C, h, w]`` (frames on dim 1, so DenseDPO's ``training_errors(segments=S)`` splits
  time); pixels ``[B, F, 3, H, W]`` RGB in [0, 1] with ``F = 1 + 4k`` (4x temporal, 16x spatial
  compression), ``z = posterior_sample * scaling_factor``; the VAE runs one video at a time (its causal
  attention mask fails on batches in diffusers 0.42); ``model.vae_tiling: true`` tiles it for 480p/720p
  videos. ``forward`` appends what the text-to-video
  pipeline appends: zero condition latents, a zero mask channel, and zero image embeddings (which the
  transformer masks out).
- Schedule: the pipeline's sigmas ``linspace(1, 1/N, N)`` with the scheduler's ``shift``; the
  transformer takes the timestep ``sigma * 1000`` as it is.
- LoRA: ``HunyuanVideo15Pipeline`` has no ``load_lora_weights`` in diffusers 0.42; ``save_lora`` writes
  the peft-layout file of diffusers' HunyuanVideo loader (keys ``transformer.<module>.lora_A/B``), which
  ``pipe.transformer.load_lora_adapter(folder, weight_name="pytorch_lora_weights.safetensors",
  prefix="transformer")`` loads (as ``diffalign sample`` / ``eval`` do: ``generation.load_lora``). Image-to-video (``HunyuanVideo15ImageToVideoPipeline``) is not covered.
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import HunyuanVideo15Pipeline
from diffusers.loaders import HunyuanVideoLoraLoaderMixin

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.flow import MMDIT_LORA_TARGETS, FlowMatchFamilyMixin
from diffalign.pipelines.latents import VideoFactorsMixin


class HunyuanVideo15Adapter(VideoFactorsMixin, FlowMatchFamilyMixin, PipelineAdapter):
    """Adapter for ``HunyuanVideo15Pipeline`` (text-to-video)."""

    family = "hunyuanvideo15"
    pipeline_class = HunyuanVideo15Pipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    lora_loader = HunyuanVideoLoraLoaderMixin
    modality = "video"
    #: the double blocks' joint attention (video and text projections; the token refiner's too).
    default_lora_targets = MMDIT_LORA_TARGETS
    linspace_sigmas = True
    #: frames when not given (the pipeline's default, 121 = 5 s at 24 fps).
    default_num_frames: int = 121

    # ------------------------------------------------------------------ sizes
    def default_size(self) -> tuple[int, int, int]:
        """The pipeline's 16:9 size for the transformer's ``target_size`` and its 121 frames."""
        height, width = self.pipe.video_processor.calculate_default_height_width(9, 16, self.pipe.target_size)
        return int(height), int(width), self.default_num_frames

    def default_resolution(self) -> int:
        return self.default_size()[0]

    def latent_shape(self, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
        num_frames = num_frames or self.default_num_frames
        if (num_frames - 1) % self.temporal_factor:
            raise ValueError(f"HunyuanVideo 1.5 num_frames must be 1 + {self.temporal_factor}k, got {num_frames}")
        factor = self.spatial_factor * self.denoiser.config.patch_size
        if height % factor or width % factor:
            raise ValueError(f"HunyuanVideo 1.5 height and width must be multiples of {factor}, got {height}x{width}")
        frames = (num_frames - 1) // self.temporal_factor + 1
        return (frames, self.pipe.num_channels_latents, height // self.spatial_factor, width // self.spatial_factor)

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """Qwen2.5-VL and ByT5 embeddings with their masks (the pipeline's fixed lengths)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, mask, embeds_2, mask_2 = self.pipe.encode_prompt(prompt=prompts, device=self.device, dtype=self.dtype,
                                                                 batch_size=len(prompts))
        return PromptEmbeds({"prompt_embeds": embeds, "prompt_embeds_mask": mask,
                             "prompt_embeds_2": embeds_2, "prompt_embeds_mask_2": mask_2})

    # ------------------------------------------------------------------ latents
    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, F, 3, H, W] RGB in [0, 1] -> [B, F', C, h, w] scaled latents (a posterior sample)."""
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"HunyuanVideo 1.5 encode_pixels takes [B, F, 3, H, W] RGB video, got {tuple(pixels.shape)}")
        video = (pixels.to(device=self.vae.device, dtype=self.vae.dtype) * 2 - 1).transpose(1, 2)
        # one video at a time: the VAE's causal mid-block attention mask breaks on batches > 1 (diffusers 0.42)
        z = torch.cat([self.vae.encode(v).latent_dist.sample(generator) for v in video.split(1)])
        return (z * self.vae.config.scaling_factor).transpose(1, 2).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, F', C, h, w] -> [B, F, 3, H, W] RGB in [0, 1] (the pipeline's decode; differentiable)."""
        z = latents.to(self.vae.dtype).transpose(1, 2) / self.vae.config.scaling_factor
        video = torch.cat([self.vae.decode(v, return_dict=False)[0] for v in z.split(1)])  # one at a time, as encode
        return (video / 2 + 0.5).clamp(0, 1).transpose(1, 2)

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """Velocity for [B, F, C, h, w]: the transformer on ``[x, 0, 0-mask]`` channels with zero image
        embeddings (text-to-video), as the pipeline calls it."""
        if noisy_latents.ndim != 5:
            raise ValueError(f"HunyuanVideo 1.5 latents are [B, F, C, H, W], got {tuple(noisy_latents.shape)}")
        x = noisy_latents.to(self.dtype).transpose(1, 2)
        b, c, f, h, w = x.shape
        t = self.batch_timesteps(timesteps, noisy_latents).to(self.dtype)
        image_embeds = x.new_zeros(b, self.pipe.vision_num_semantic_tokens, self.pipe.vision_states_dim)
        out = self.network(
            hidden_states=torch.cat([x, torch.zeros_like(x), x.new_zeros(b, 1, f, h, w)], dim=1),
            image_embeds=image_embeds,
            timestep=t,
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            encoder_attention_mask=cond["prompt_embeds_mask"],
            encoder_hidden_states_2=cond["prompt_embeds_2"].to(self.dtype),
            encoder_attention_mask_2=cond["prompt_embeds_mask_2"],
            return_dict=False,
        )[0]
        return out.transpose(1, 2)


__all__ = ["HunyuanVideo15Adapter"]
