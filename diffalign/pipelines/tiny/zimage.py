"""A tiny random-init ``ZImagePipeline`` for tests.

Real classes with small widths: a one-layer ``ZImageTransformer2DModel`` (one refiner layer each for
noise and text, 2x2 patches), the two-level ``AutoencoderKL`` with FLUX.1's scaling and shift factors, a
two-layer ``Qwen3Model`` (the pipeline reads the second-to-last hidden states) over the offline tiny
tokenizer with Qwen3's chat template, and a flow-matching scheduler with shift 3.0.
"""
from __future__ import annotations

from typing import Any

import torch

#: flow matching with a fixed shift of 3.0 (Z-Image-Turbo's scheduler; no dynamic shifting).
ZIMAGE_SCHEDULER_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}
TEXT_WIDTH = 16


def build(seed: int = 0, *, sample_size: int = 16, transformer: dict[str, Any] | None = None,
          scheduler: dict[str, Any] | None = None):
    """A tiny ``ZImagePipeline``; deterministic for ``seed`` (``sample_size``: default latent side)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

    from diffalign.pipelines.tiny.flux import FLUX_VAE_FACTORS
    from diffalign.pipelines.tiny.qwen3 import qwen3_tokenizer, tiny_qwen3
    from diffalign.pipelines.tiny.sd import tiny_vae

    torch.manual_seed(seed)
    config = dict(in_channels=4, dim=32, n_layers=1, n_refiner_layers=1, n_heads=2, n_kv_heads=2,
                  cap_feat_dim=TEXT_WIDTH, axes_dims=[4, 6, 6], axes_lens=[64, 32, 32])
    config.update(transformer or {})
    denoiser = ZImageTransformer2DModel(**config).eval()
    vae = tiny_vae(seed + 1, use_quant_conv=False, use_post_quant_conv=False, **FLUX_VAE_FACTORS)
    tokenizer = qwen3_tokenizer()
    text_encoder = tiny_qwen3(seed + 2, len(tokenizer), hidden_size=TEXT_WIDTH, num_layers=2, causal_lm=False)
    pipe = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config({**ZIMAGE_SCHEDULER_CONFIG, **(scheduler or {})}),
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=denoiser,
    )
    pipe.default_sample_size = sample_size  # ZImagePipeline defaults to 1024 px
    return pipe
