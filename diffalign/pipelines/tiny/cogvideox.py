"""A tiny random-init ``CogVideoXPipeline`` (3D-attention video DiT, v-prediction) for tests.

Real diffusers/transformers classes with small widths: a two-block ``CogVideoXTransformer3DModel``
with rotary positional embeddings (as CogVideoX-5B), a three-level causal ``AutoencoderKLCogVideoX``
(4x spatial, 4x temporal compression: 9 frames of 16x16 -> 3 latent frames of 4x4), a tiny T5
encoder with a small real T5 tokenizer, and CogVideoX-2B's ``CogVideoXDDIMScheduler`` config
(v-prediction, zero terminal SNR, ``snr_shift_scale`` 3, trailing spacing).
"""
from __future__ import annotations

from typing import Any

import torch

#: CogVideoX-2B's scheduler config (5B differs by ``snr_shift_scale`` 1.0 and the DPM scheduler class).
COGVIDEOX_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "set_alpha_to_one": True,
    "snr_shift_scale": 3.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
}
T5_WIDTH = 32


def build(seed: int = 0, *, sample_size: int = 4, sample_frames: int = 9, transformer: dict[str, Any] | None = None,
          vae: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None):
    """A tiny ``CogVideoXPipeline``; deterministic for ``seed``.

    ``sample_size``: latent side (videos are 4x as large: 16x16 by default); ``sample_frames``:
    default pixel frames (``1 + 4k``). ``transformer`` / ``vae`` / ``scheduler``: config overrides
    (e.g. ``transformer={"use_rotary_positional_embeddings": False}`` for CogVideoX-2B's sincos
    positions, which then fixes the sample size).
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    from diffalign.pipelines.tiny.t5 import tiny_t5

    torch.manual_seed(seed)
    transformer_config = dict(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=16,
        text_embed_dim=T5_WIDTH,
        num_layers=2,
        sample_width=sample_size,
        sample_height=sample_size,
        sample_frames=sample_frames,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,
        use_rotary_positional_embeddings=True,
    )
    transformer_config.update(transformer or {})
    denoiser = CogVideoXTransformer3DModel(**transformer_config).eval()

    tokenizer, text_encoder = tiny_t5(seed + 1, d_model=T5_WIDTH, model_max_length=226)

    torch.manual_seed(seed + 2)
    vae_config = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 3,
        up_block_types=("CogVideoXUpBlock3D",) * 3,
        block_out_channels=(8, 8, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        sample_height=4 * sample_size,
        sample_width=4 * sample_size,
        scaling_factor=1.15258426,
    )
    vae_config.update(vae or {})
    autoencoder = AutoencoderKLCogVideoX(**vae_config).eval()

    sched = CogVideoXDDIMScheduler.from_config({**COGVIDEOX_SCHEDULER_CONFIG, **(scheduler or {})})
    return CogVideoXPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=autoencoder, transformer=denoiser, scheduler=sched
    )
