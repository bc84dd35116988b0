"""LTX-2 (``LTX2Pipeline``: Lightricks' LTX-2 19B audio-video DiT), trained and sampled as a video model:
the video stream of the joint audio-video transformer on rectified flow, cut off from the audio stream.

- Video only, the way Lightricks' own trainer trains video LoRAs (``ltx-trainer``'s text-to-video
  strategy with ``with_audio: false``, its default: the audio modality is absent, so the blocks skip
  audio-to-video attention). ``forward`` calls ``LTX2VideoTransformer3DModel`` with
  ``isolate_modalities=True`` (no audio-to-video / video-to-audio cross-attention) and a one-token zero
  audio sequence that the video output does not depend on (a zero-length one breaks LTX-2.3's split
  RoPE in diffusers 0.42): the video prediction depends on the video latents, the timestep and the
  text alone, which is what every offline loss (video data has no audio latents here), Flow-GRPO and the reward-gradient
  trainers need. The sampling chain is the pipeline's own denoising loop with that transformer call;
  ``LTX2Pipeline`` itself always generates audio jointly, and its audio-to-video attention makes the
  video of a joint call differ from the video-only one (the test suite shows both). A LoRA trained
  here loads with ``pipe.load_lora_weights`` and is used in the joint pipeline as Lightricks'
  video-only LoRAs are. Joint audio-video training (audio latents as a second target) is not covered.
- Conditioning, cacheable per prompt: Gemma 3 hidden states of every layer, stacked, over
  ``max_sequence_length`` (1024) left-padded tokens (the pipeline's ``encode_prompt``), then the
  pipeline's text connectors (``LTX2TextConnectors``: padding replaced by learned registers, the mask
  all ones afterwards), which give the video and the audio streams their text embeddings. The cache
  keeps the connectors' outputs (``prompt_embeds``, ``audio_prompt_embeds``, ``prompt_attention_mask``);
  the connectors are frozen (LoRA trains the transformer only). Gemma-3-12B (24 GB in bf16) is the
  large piece: encode once, then offload or drop it.
- Latents: ``[B, F, C, h, w]`` (frames on dim 1, so DenseDPO's ``training_errors(segments=S)`` splits
  time); pixels ``[B, F, 3, H, W]`` RGB in [0, 1] with ``F = 1 + 8k`` (8x temporal, 32x spatial
  compression for LTX-2's VAE); normalised as the pipeline does,
  ``z = (posterior_sample - latents_mean) * scaling_factor / latents_std``. ``forward`` packs them into
  the transformer's tokens (``LTX2Pipeline._pack_latents``) and back.
- Schedule: the pipeline's sigmas ``linspace(1, 1/N, N)`` with the shift ``mu`` of FLUX's linear rule
  over the *video* token count (frames x height x width: resolution- and length-dependent) with LTX-2's
  terms (``base_image_seq_len`` 1024, ``max_image_seq_len`` 4096, ``base_shift`` 0.95, ``max_shift``
  2.05 unless the scheduler config says otherwise); the transformer takes ``timestep = sigma * 1000``
  (and the same as ``sigma`` for LTX-2.3's prompt modulation).
- Guidance: the pipeline's CFG against the negative prompt (default ``""``), formed on the x0
  predictions with its ``guidance_rescale`` (0.7, the pipeline's default; ``guidance_rescale = 0``
  gives plain CFG). Spatio-temporal guidance (STG, the pipeline's ``stg_scale``) is not reproduced
  (call the pipeline with ``stg_scale=0`` to compare); modality-isolation guidance is exactly zero for
  the video-only model. ``frame_rate`` (24) feeds the transformer's temporal positions.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, LTX2Pipeline
from diffusers.pipelines.ltx2.pipeline_ltx2 import rescale_noise_cfg

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.flow import FlowMatchFamilyMixin, calculate_shift

#: the video stream's self-attention and text cross-attention (not the audio stream, not the
#: audio-video cross-attention, which the video-only forward does not run).
LTX2_VIDEO_LORA_TARGETS: tuple[str, ...] = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
)


class LTX2Adapter(FlowMatchFamilyMixin, PipelineAdapter):
    """Adapter for ``LTX2Pipeline`` (text-to-video; video only, see the module docstring)."""

    family = "ltx2"
    pipeline_class = LTX2Pipeline
    denoiser_name = "transformer"
    lora_key_format = "peft"
    modality = "video"
    default_lora_targets = LTX2_VIDEO_LORA_TARGETS
    linspace_sigmas = True
    #: Gemma tokens per prompt (the pipeline's default).
    max_sequence_length: int = 1024
    #: frames per second the transformer's temporal positions assume (the pipeline's ``frame_rate``).
    frame_rate: float = 24.0
    #: the pipeline's ``guidance_rescale`` (applied to the x0 predictions when guiding).
    guidance_rescale: float = 0.7
    #: ``(height, width, num_frames)`` the pipeline generates by default.
    default_video_size: tuple[int, int, int] = (512, 768, 121)

    # ------------------------------------------------------------------ sizes
    @property
    def spatial_factor(self) -> int:
        return int(self.pipe.vae_spatial_compression_ratio)

    @property
    def temporal_factor(self) -> int:
        return int(self.pipe.vae_temporal_compression_ratio)

    def default_size(self) -> tuple[int, int, int]:
        return self.default_video_size

    def default_resolution(self) -> int:
        return self.default_size()[0]

    def latent_shape(self, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
        num_frames = num_frames or self.default_size()[2]
        if (num_frames - 1) % self.temporal_factor:
            raise ValueError(f"LTX-2 num_frames must be 1 + {self.temporal_factor}k, got {num_frames}")
        factor = self.spatial_factor * int(self.denoiser.config.patch_size)
        if height % factor or width % factor:
            raise ValueError(f"LTX-2 height and width must be multiples of {factor}, got {height}x{width}")
        frames = (num_frames - 1) // self.temporal_factor + 1
        return (frames, int(self.denoiser.config.in_channels), height // self.spatial_factor, width // self.spatial_factor)

    def video_seq_len(self, height: int, width: int, num_frames: int | None = None) -> int:
        """Video tokens the transformer sees (what the pipeline's shift ``mu`` depends on)."""
        f, _, h, w = self.latent_shape(height, width, num_frames)
        p, pt = int(self.denoiser.config.patch_size), int(self.denoiser.config.patch_size_t)
        return (f // pt) * (h // p) * (w // p)

    # ------------------------------------------------------------------ schedule
    def sampling_scheduler(self, num_inference_steps: int, *, height: int | None = None, width: int | None = None,
                           num_frames: int | None = None):
        """A fresh ``FlowMatchEulerDiscreteScheduler`` after ``set_timesteps`` as the pipeline sets it:
        ``linspace(1, 1/N, N)`` sigmas and ``mu`` of the video token count at this size."""
        default_h, default_w, default_f = self.default_size()
        config = self.flow_scheduler_config()
        sched = FlowMatchEulerDiscreteScheduler.from_config(config)
        mu = self.shift_mu_video(self.video_seq_len(height or default_h, width or default_w, num_frames or default_f), config)
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        sched.set_timesteps(sigmas=sigmas, device=self.device, mu=mu)
        return sched

    @staticmethod
    def shift_mu_video(video_tokens: int, config) -> float:
        """The pipeline's ``mu``: :func:`calculate_shift` of the video tokens with LTX-2's default terms."""
        return calculate_shift(video_tokens, config.get("base_image_seq_len", 1024), config.get("max_image_seq_len", 4096),
                               config.get("base_shift", 0.95), config.get("max_shift", 2.05))

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """Gemma 3 hidden states through the pipeline's text connectors: the video and audio streams'
        text embeddings [B, L, D] and the connectors' mask [B, L] (no CFG doubling)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        embeds, mask, _, _ = self.pipe.encode_prompt(prompt=prompts, do_classifier_free_guidance=False,
                                                     max_sequence_length=self.max_sequence_length, device=self.device)
        padding_side = getattr(self.pipe.tokenizer, "padding_side", "left")
        video, audio, mask = self.pipe.connectors(embeds.to(self.pipe.connectors.dtype), mask, padding_side=padding_side)
        return PromptEmbeds({"prompt_embeds": video.to(self.dtype), "audio_prompt_embeds": audio.to(self.dtype),
                             "prompt_attention_mask": mask})

    # ------------------------------------------------------------------ latents
    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        shape = (1, -1, 1, 1, 1)
        mean = self.vae.latents_mean.view(shape).to(like.device, like.dtype)
        std = self.vae.latents_std.view(shape).to(like.device, like.dtype)
        return mean, std, float(self.vae.config.scaling_factor)

    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, F, 3, H, W] RGB in [0, 1] -> [B, F', C, h, w] normalised latents (a posterior sample)."""
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"LTX-2 encode_pixels takes [B, F, 3, H, W] RGB video, got {tuple(pixels.shape)}")
        video = (pixels.to(device=self.vae.device, dtype=self.vae.dtype) * 2 - 1).transpose(1, 2)
        z = self.vae.encode(video).latent_dist.sample(generator)
        mean, std, scale = self._latent_stats(z)
        return ((z - mean) * scale / std).transpose(1, 2).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, F', C, h, w] -> [B, F, 3, H, W] RGB in [0, 1] (the pipeline's decode at ``decode_timestep`` 0;
        differentiable)."""
        z = latents.to(self.vae.dtype).transpose(1, 2)
        mean, std, scale = self._latent_stats(z)
        z = z * std / scale + mean
        timestep = z.new_zeros(z.shape[0]) if self.vae.config.timestep_conditioning else None
        video = self.vae.decode(z, timestep, return_dict=False)[0]
        return (video / 2 + 0.5).clamp(0, 1).transpose(1, 2)

    # ------------------------------------------------------------------ modules besides the transformer
    #: what runs only to make the (cached) conditioning or the joint pipeline's audio: frozen with the
    #: VAE and text encoder, and freed with them once training reads the cache.
    extra_frozen_modules: tuple[str, ...] = ("connectors", "audio_vae", "vocoder")

    def freeze(self) -> None:
        super().freeze()
        for name in self.extra_frozen_modules:
            module = getattr(self.pipe, name, None)
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)

    def drop_encoder_weights(self) -> list[str]:
        dropped = super().drop_encoder_weights()
        for name in self.extra_frozen_modules:
            module = getattr(self.pipe, name, None)
            if isinstance(module, torch.nn.Module):
                module.to("meta")
                dropped.append(name)
        return dropped

    # ------------------------------------------------------------------ network
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """The video velocity for [B, F, C, h, w] latents: the transformer on the packed video tokens with
        the audio-video cross-attention off (video only). The audio stream gets one zero token (the video
        output does not depend on it; zero tokens break the split RoPE of LTX-2.3 in diffusers 0.42)."""
        if noisy_latents.ndim != 5:
            raise ValueError(f"LTX-2 latents are [B, F, C, H, W], got {tuple(noisy_latents.shape)}")
        b, f, _, h, w = noisy_latents.shape
        cfg = self.denoiser.config
        p, pt = int(cfg.patch_size), int(cfg.patch_size_t)
        x = LTX2Pipeline._pack_latents(noisy_latents.to(self.dtype).transpose(1, 2), p, pt)
        t = self.batch_timesteps(timesteps, noisy_latents).to(self.dtype)
        mask = cond["prompt_attention_mask"]
        out = self.network(
            hidden_states=x,
            audio_hidden_states=x.new_zeros(b, 1, int(cfg.audio_in_channels)),
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            audio_encoder_hidden_states=cond["audio_prompt_embeds"].to(self.dtype),
            timestep=t,
            sigma=t,
            encoder_attention_mask=mask,
            audio_encoder_attention_mask=mask,
            num_frames=f // pt,
            height=h // p,
            width=w // p,
            fps=self.frame_rate,
            audio_num_frames=1,
            isolate_modalities=True,
            use_cross_timestep=True,
            return_dict=False,
        )[0]
        return LTX2Pipeline._unpack_latents(out, f // pt, h // p, w // p, p, pt).transpose(1, 2)

    def guided_forward(self, latents, timestep, cond, uncond=None, guidance_scale: float = 1.0,
                       detach_uncond: bool = False) -> torch.Tensor:
        """The pipeline's CFG: on the x0 predictions ``x - sigma v``, with ``guidance_rescale``, back to a velocity."""
        if uncond is None or guidance_scale == 1.0:
            return super().guided_forward(latents, timestep, cond)
        b = latents.shape[0]
        t = torch.as_tensor(timestep, device=latents.device)
        t = t.expand(b) if t.ndim == 0 else t
        out = self.forward(torch.cat([latents, latents]), torch.cat([t, t]), PromptEmbeds.cat([uncond, cond]))
        dtype = out.dtype
        out_u, out_c = out.float().chunk(2)
        if detach_uncond:
            out_u = out_u.detach()
        sigma = self.sigmas(t, latents.ndim, device=latents.device)
        x = latents.float()
        x0_c, x0_u = x - sigma * out_c, x - sigma * out_u
        x0 = x0_c + (guidance_scale - 1) * (x0_c - x0_u)
        if self.guidance_rescale > 0:
            x0 = rescale_noise_cfg(x0, x0_c, guidance_rescale=self.guidance_rescale)
        return ((x - x0) / sigma).to(dtype)


__all__ = ["LTX2Adapter", "LTX2_VIDEO_LORA_TARGETS"]
