"""A tiny random-init ``StableDiffusionPipeline`` (SD1.x/2.x architecture) for tests.

Real diffusers/transformers classes with small widths: a two-level ``UNet2DConditionModel`` with
cross-attention, a two-level ``AutoencoderKL`` (latents at 1/2 the image side), a small
``CLIPTextModel`` over the real CLIP vocabulary with the offline ``CLIPTokenizer``, and the
SD1.5-style PNDM scheduler config (``prediction_type="v_prediction"`` gives the SD2.x variant).
"""
from __future__ import annotations

from typing import Any

import torch

#: the real SD scheduler settings (scaled-linear betas, ``steps_offset`` 1, no sample clipping).
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
}


def tiny_vae(seed: int, latent_channels: int = 4, **overrides):
    """A two-level ``AutoencoderKL`` (vae_scale_factor 2) with SD's scaling factor."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    config = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=latent_channels,
        sample_size=32,
        scaling_factor=0.18215,
    )
    config.update(overrides)
    return AutoencoderKL(**config).eval()


def tiny_clip_text_encoder(seed: int, pad_token_id: int, *, hidden_size: int = 32, projection_dim: int | None = None,
                           max_position_embeddings: int = 77, num_hidden_layers: int = 2):
    """A small CLIP text encoder over the full CLIP vocabulary (``CLIPTextModelWithProjection``
    when ``projection_dim`` is given, as SDXL's second encoder)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from diffalign.pipelines.tokenizers import CLIP_VOCAB_SIZE

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=pad_token_id,
        projection_dim=projection_dim or hidden_size,
        hidden_act="quick_gelu",
    )
    cls = CLIPTextModel if projection_dim is None else CLIPTextModelWithProjection
    return cls(config).eval()


def tiny_unet_config(sample_size: int, **overrides: Any) -> dict[str, Any]:
    """Config of a two-level ``UNet2DConditionModel`` (32/64 channels) shared by the tiny SD and SDXL
    pipelines; ``overrides`` add or replace keys."""
    return {
        "sample_size": sample_size,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "attention_head_dim": (2, 4),
        "norm_num_groups": 8,
        **overrides,
    }


def build(seed: int = 0, *, prediction_type: str = "epsilon", sample_size: int = 16, model_max_length: int = 77,
          unet: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None):
    """A tiny ``StableDiffusionPipeline``; deterministic for ``seed``.

    ``prediction_type``: ``"epsilon"`` (SD1.x) or ``"v_prediction"`` (SD2.x-v). ``sample_size``:
    latent side (images are twice as large). ``unet`` / ``scheduler``: config overrides.
    """
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from diffalign.pipelines.tokenizers import clip_tokenizer

    torch.manual_seed(seed)
    denoiser = UNet2DConditionModel(**{**tiny_unet_config(sample_size, cross_attention_dim=32), **(unet or {})}).eval()
    tokenizer = clip_tokenizer("<|endoftext|>", model_max_length=model_max_length)
    text_encoder = tiny_clip_text_encoder(seed + 1, pad_token_id=tokenizer.pad_token_id,
                                          max_position_embeddings=max(77, model_max_length))
    vae = tiny_vae(seed + 2)
    sched_config = {**SD_SCHEDULER_CONFIG, "prediction_type": prediction_type, **(scheduler or {})}
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=denoiser,
        scheduler=PNDMScheduler.from_config(sched_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
