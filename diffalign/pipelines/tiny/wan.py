"""A tiny random-init ``WanPipeline`` (Wan2.1 text-to-video architecture) for tests.

Real classes with small widths: a one-block ``WanTransformer3DModel`` (patch 1x2x2), the 3D causal
``AutoencoderKLWan`` (8x spatial, 4x temporal compression, as Wan2.1's) with 4 latent channels, a
tiny ``UMT5EncoderModel`` over the tiny real T5 tokenizer, and a ``FlowMatchEulerDiscreteScheduler``
with Wan2.1-480p's shift 3.0.
"""
from __future__ import annotations

from typing import Any

import torch

#: Wan2.1-T2V-1.3B's flow_shift at 480p, as a flow-matching scheduler config.
WAN_SCHEDULER_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0}
Z_DIM, TEXT_WIDTH = 4, 32
#: a tiny Wan-style 3D causal VAE (8x spatial, 4x temporal, Wan's first latent statistics); Qwen-Image's VAE takes the same.
TINY_WAN_VAE_CONFIG: dict[str, Any] = dict(
    base_dim=4, z_dim=Z_DIM, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
    latents_mean=[-0.7571, -0.7089, -0.9113, 0.1075], latents_std=[2.8184, 1.4541, 2.3275, 2.6558],
)


def tiny_umt5(seed: int, d_model: int = TEXT_WIDTH, num_layers: int = 1):
    """``(tokenizer, UMT5EncoderModel)`` over the tiny offline T5 tokenizer (``num_layers`` blocks)."""
    from transformers import UMT5Config, UMT5EncoderModel

    from diffalign.pipelines.tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer()
    torch.manual_seed(seed)
    config = UMT5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=d_model // 4, d_ff=2 * d_model,
                        num_layers=num_layers, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
                        feed_forward_proj="gated-gelu", pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    return tokenizer, UMT5EncoderModel(config).eval()


def build(seed: int = 0, *, transformer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
          expand_timesteps: bool = False):
    """A tiny ``WanPipeline``; deterministic for ``seed``."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    torch.manual_seed(seed)
    config = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=Z_DIM,
                  out_channels=Z_DIM, text_dim=TEXT_WIDTH, freq_dim=16, ffn_dim=32, num_layers=1,
                  rope_max_seq_len=32)
    config.update(transformer or {})
    denoiser = WanTransformer3DModel(**config).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(**TINY_WAN_VAE_CONFIG).eval()
    tokenizer, text_encoder = tiny_umt5(seed + 2)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=denoiser,
                       scheduler=FlowMatchEulerDiscreteScheduler.from_config({**WAN_SCHEDULER_CONFIG, **(scheduler or {})}),
                       expand_timesteps=expand_timesteps)
