"""A tiny random-init ``StableDiffusion3Pipeline`` (MMDiT, rectified flow) for tests.

Real diffusers/transformers classes with small widths: a two-block ``SD3Transformer2DModel``, a
two-level ``AutoencoderKL`` with SD3's scaling *and* shift factors (latents at 1/2 the image side),
two ``CLIPTextModelWithProjection`` encoders of different widths over the real CLIP vocabulary (the
offline CLIP tokenizers; the second pads with ``"!"`` like CLIP-G), a tiny T5 encoder with a small
real T5 tokenizer, and SD3's ``FlowMatchEulerDiscreteScheduler`` (``shift=3.0``).
"""
from __future__ import annotations

from typing import Any

import torch

#: SD3's scheduler config (stable-diffusion-3-medium / 3.5): rectified flow with timestep shift 3.
SD3_SCHEDULER_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0}
#: SD3's VAE latent normalisation: ``z = (mean - shift_factor) * scaling_factor``.
SD3_VAE_FACTORS: dict[str, float] = {"scaling_factor": 1.5305, "shift_factor": 0.0609}

CLIP_L_WIDTH, CLIP_G_WIDTH, T5_WIDTH = 16, 32, 64


def build(seed: int = 0, *, sample_size: int = 16, with_t5: bool = True, model_max_length: int = 77,
          transformer: dict[str, Any] | None = None, vae: dict[str, Any] | None = None,
          scheduler: dict[str, Any] | None = None):
    """A tiny ``StableDiffusion3Pipeline``; deterministic for ``seed``.

    ``sample_size``: latent side (images are twice as large). ``with_t5=False`` leaves
    ``text_encoder_3`` out (SD3 then uses zero T5 embeddings). ``transformer`` / ``vae`` /
    ``scheduler``: config overrides (e.g. ``transformer={"qk_norm": "rms_norm"}`` as SD3.5).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    from diffalign.pipelines.tiny.sd import tiny_clip_text_encoder, tiny_vae
    from diffalign.pipelines.tiny.t5 import tiny_t5
    from diffalign.pipelines.tokenizers import clip_tokenizer

    torch.manual_seed(seed)
    transformer_config = dict(
        sample_size=sample_size,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=T5_WIDTH,
        caption_projection_dim=32,
        pooled_projection_dim=CLIP_L_WIDTH + CLIP_G_WIDTH,
        pos_embed_max_size=32,
    )
    transformer_config.update(transformer or {})
    denoiser = SD3Transformer2DModel(**transformer_config).eval()

    tokenizer = clip_tokenizer("<|endoftext|>", model_max_length=model_max_length)
    tokenizer_2 = clip_tokenizer("!", model_max_length=model_max_length)
    positions = max(77, model_max_length)
    text_encoder = tiny_clip_text_encoder(seed + 1, tokenizer.pad_token_id, hidden_size=CLIP_L_WIDTH,
                                          projection_dim=CLIP_L_WIDTH, max_position_embeddings=positions)
    text_encoder_2 = tiny_clip_text_encoder(seed + 2, tokenizer_2.pad_token_id, hidden_size=CLIP_G_WIDTH,
                                            projection_dim=CLIP_G_WIDTH, max_position_embeddings=positions)
    tokenizer_3, text_encoder_3 = tiny_t5(seed + 3, d_model=T5_WIDTH) if with_t5 else (None, None)

    autoencoder = tiny_vae(seed + 4, use_quant_conv=False, use_post_quant_conv=False,
                           **{**SD3_VAE_FACTORS, **(vae or {})})
    sched = FlowMatchEulerDiscreteScheduler.from_config({**SD3_SCHEDULER_CONFIG, **(scheduler or {})})
    return StableDiffusion3Pipeline(
        transformer=denoiser,
        scheduler=sched,
        vae=autoencoder,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
