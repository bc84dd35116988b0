"""A tiny random-init ``FluxPipeline`` (FLUX.1-dev architecture) for tests.

Real classes with small widths: a ``FluxTransformer2DModel`` with one double and one single block
and the guidance embedding (guidance-distilled, as FLUX.1-dev), a two-level ``AutoencoderKL`` with
FLUX's scaling and shift factors, a CLIP text encoder (pooled) over the offline CLIP tokenizer, a
tiny T5 encoder with the tiny real T5 tokenizer, and FLUX.1-dev's scheduler config (dynamic shift).
"""
from __future__ import annotations

from typing import Any

import torch

#: black-forest-labs/FLUX.1-dev scheduler/scheduler_config.json.
FLUX_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True,
    "base_image_seq_len": 256, "max_image_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15,
}
#: FLUX.1's VAE latent normalisation.
FLUX_VAE_FACTORS: dict[str, float] = {"scaling_factor": 0.3611, "shift_factor": 0.1159}

CLIP_WIDTH, T5_WIDTH = 16, 32


def build(seed: int = 0, *, sample_size: int = 16, guidance_embeds: bool = True,
          transformer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None):
    """A tiny ``FluxPipeline``; deterministic for ``seed``. ``sample_size``: default latent side
    (images twice as large). ``guidance_embeds=False`` is the FLUX.1-schnell layout."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    from diffalign.pipelines.tiny.sd import tiny_clip_text_encoder, tiny_vae
    from diffalign.pipelines.tiny.t5 import tiny_t5
    from diffalign.pipelines.tokenizers import clip_tokenizer

    torch.manual_seed(seed)
    config = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
                  num_attention_heads=2, joint_attention_dim=T5_WIDTH, pooled_projection_dim=CLIP_WIDTH,
                  guidance_embeds=guidance_embeds, axes_dims_rope=(2, 2, 4))
    config.update(transformer or {})
    denoiser = FluxTransformer2DModel(**config).eval()
    tokenizer = clip_tokenizer("<|endoftext|>")
    text_encoder = tiny_clip_text_encoder(seed + 1, tokenizer.pad_token_id, hidden_size=CLIP_WIDTH)
    tokenizer_2, text_encoder_2 = tiny_t5(seed + 2, d_model=T5_WIDTH)
    vae = tiny_vae(seed + 3, use_quant_conv=False, use_post_quant_conv=False, **FLUX_VAE_FACTORS)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config({**FLUX_SCHEDULER_CONFIG, **(scheduler or {})}),
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2, transformer=denoiser,
    )
    pipe.default_sample_size = sample_size  # FluxPipeline hard-codes 128 (1024 px at factor 8)
    return pipe
