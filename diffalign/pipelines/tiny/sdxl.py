"""A tiny random-init ``StableDiffusionXLPipeline`` for tests.

Real classes with small widths: a ``UNet2DConditionModel`` with SDXL's ``text_time`` added
conditioning, two CLIP text encoders over the real vocabulary (the second with a projection, as
OpenCLIP bigG, and ``"!"`` as pad token), a two-level ``AutoencoderKL`` with SDXL's scaling factor and
``force_upcast``, and SDXL's Euler scheduler config.
"""
from __future__ import annotations

from typing import Any

import torch

from diffalign.pipelines.tiny.sd import SD_SCHEDULER_CONFIG, tiny_clip_text_encoder, tiny_unet_config, tiny_vae

SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    **SD_SCHEDULER_CONFIG,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}


def build(seed: int = 0, *, prediction_type: str = "epsilon", sample_size: int = 16, model_max_length: int = 77,
          unet: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None):
    """A tiny ``StableDiffusionXLPipeline``; deterministic for ``seed``. ``sample_size`` is the
    latent side (images are twice as large); ``unet`` / ``scheduler`` are config overrides."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from diffalign.pipelines.tokenizers import clip_tokenizer

    hidden_1, hidden_2, time_dim = 32, 32, 8
    torch.manual_seed(seed)
    unet_config = tiny_unet_config(
        sample_size,
        use_linear_projection=True,
        transformer_layers_per_block=(1, 1),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + hidden_2,
        cross_attention_dim=hidden_1 + hidden_2,
    )
    denoiser = UNet2DConditionModel(**{**unet_config, **(unet or {})}).eval()
    tokenizer = clip_tokenizer("<|endoftext|>", model_max_length=model_max_length)
    tokenizer_2 = clip_tokenizer("!", model_max_length=model_max_length)
    positions = max(77, model_max_length)
    text_encoder = tiny_clip_text_encoder(seed + 1, tokenizer.pad_token_id, hidden_size=hidden_1,
                                          max_position_embeddings=positions)
    text_encoder_2 = tiny_clip_text_encoder(seed + 2, tokenizer_2.pad_token_id, hidden_size=hidden_2,
                                            projection_dim=hidden_2, max_position_embeddings=positions)
    vae = tiny_vae(seed + 3, scaling_factor=0.13025, force_upcast=True)
    sched_config = {**SDXL_SCHEDULER_CONFIG, "prediction_type": prediction_type, **(scheduler or {})}
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=denoiser,
        scheduler=EulerDiscreteScheduler.from_config(sched_config),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
