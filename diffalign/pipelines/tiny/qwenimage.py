"""A tiny random-init ``QwenImagePipeline`` for tests.

Real classes with small widths: a one-layer ``QwenImageTransformer2DModel`` (2x2 packing), the
Wan-style ``AutoencoderKLQwenImage`` (8x, 4 latent channels), a tiny ``Qwen2_5_VLForConditionalGeneration``
built offline from transformers' config classes, the offline tiny ``Qwen2Tokenizer`` (whose tokens for
the pipeline's template make its system prefix the 34 tokens the pipeline drops), and Qwen-Image's
scheduler config (dynamic shift).
"""
from __future__ import annotations

from typing import Any

import torch

#: Qwen/Qwen-Image scheduler/scheduler_config.json (the shift terms; exponential time shift).
QWEN_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_image_seq_len": 256,
    "max_image_seq_len": 8192, "base_shift": 0.5, "max_shift": 0.9, "shift_terminal": 0.02, "time_shift_type": "exponential",
}
TEXT_WIDTH = 32


def tiny_qwen25_vl(seed: int, vocab_size: int, hidden_size: int = TEXT_WIDTH):
    """A one-layer Qwen2.5-VL (text and vision towers) from config classes, no download."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=1024, bos_token_id=None, eos_token_id=None,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]}),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=hidden_size,
                           fullatt_block_indexes=[0], patch_size=2, spatial_merge_size=1, temporal_patch_size=1,
                           window_size=4),
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def build(seed: int = 0, *, sample_size: int = 4, transformer: dict[str, Any] | None = None,
          scheduler: dict[str, Any] | None = None):
    """A tiny ``QwenImagePipeline``; deterministic for ``seed`` (``sample_size``: default latent side)."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel

    from diffalign.pipelines.tiny.wan import TINY_WAN_VAE_CONFIG
    from diffalign.pipelines.tokenizers import qwen2_tokenizer

    torch.manual_seed(seed)
    config = dict(patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=8,
                  num_attention_heads=2, joint_attention_dim=TEXT_WIDTH, axes_dims_rope=(2, 2, 4))
    config.update(transformer or {})
    denoiser = QwenImageTransformer2DModel(**config).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLQwenImage(**TINY_WAN_VAE_CONFIG).eval()
    tokenizer = qwen2_tokenizer()
    text_encoder = tiny_qwen25_vl(seed + 2, len(tokenizer))
    pipe = QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config({**QWEN_SCHEDULER_CONFIG, **(scheduler or {})}),
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=denoiser,
    )
    pipe.default_sample_size = sample_size  # QwenImagePipeline hard-codes 128 (1024 px at factor 8)
    return pipe
