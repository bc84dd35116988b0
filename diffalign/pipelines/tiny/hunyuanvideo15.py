"""A tiny random-init ``HunyuanVideo15Pipeline`` (text-to-video) for tests.

Real classes with small widths: a one-layer ``HunyuanVideo15Transformer3DModel`` (patch 1, input =
latents + condition latents + mask channels), the causal ``AutoencoderKLHunyuanVideo15`` at 4x spatial
and 4x temporal compression with 4 latent channels, a two-layer ``Qwen2_5_VLTextModel`` over the offline
tiny tokenizer with the chat template (the pipeline reads the third-to-last hidden states), a tiny T5
encoder over the byte-level ``ByT5Tokenizer`` (glyph text), a ``ClassifierFreeGuidance`` guider and a
flow-matching scheduler with shift 5.0. The pipeline's text lengths (1000 Qwen tokens after a
108-token template prefix, 256 ByT5 tokens, 729 image tokens) are instance attributes: the build sets
them small (and the prefix to the tiny tokenizer's own template length); a reloaded folder has the defaults.
"""
from __future__ import annotations

from typing import Any

import torch

#: flow matching with HunyuanVideo 1.5's 480p shift.
HUNYUANVIDEO15_SCHEDULER_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 5.0}
Z_DIM, TEXT_WIDTH = 4, 16


def tiny_qwen25_vl_text(seed: int, vocab_size: int, hidden_size: int = TEXT_WIDTH, num_layers: int = 2):
    """The text tower of Qwen2.5-VL (``Qwen2_5_VLTextModel``) from its config class, no download."""
    from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    torch.manual_seed(seed)
    config = Qwen2_5_VLTextConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                                  num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=1,
                                  max_position_embeddings=1024, bos_token_id=None, eos_token_id=None,
                                  rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]})
    return Qwen2_5_VLTextModel(config).eval()


def build(seed: int = 0, *, guidance_scale: float = 1.0, text_tokens: int = 32, glyph_tokens: int = 16,
          transformer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None):
    """A tiny ``HunyuanVideo15Pipeline``; deterministic for ``seed``. ``guidance_scale``: the guider's
    (1.0: no CFG); ``text_tokens`` / ``glyph_tokens``: the Qwen and ByT5 lengths the pipeline pads to."""
    from diffusers import (AutoencoderKLHunyuanVideo15, ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler,
                           HunyuanVideo15Pipeline, HunyuanVideo15Transformer3DModel)
    from transformers import ByT5Tokenizer

    from diffalign.pipelines.tiny.qwen3 import qwen3_tokenizer
    from diffalign.pipelines.tiny.t5 import tiny_t5

    torch.manual_seed(seed)
    config = dict(in_channels=2 * Z_DIM + 1, out_channels=Z_DIM, num_attention_heads=2, attention_head_dim=8,
                  num_layers=1, num_refiner_layers=1, text_embed_dim=TEXT_WIDTH, text_embed_2_dim=TEXT_WIDTH,
                  image_embed_dim=8, rope_axes_dim=(2, 2, 4), target_size=32, task_type="t2v")
    config.update(transformer or {})
    denoiser = HunyuanVideo15Transformer3DModel(**config).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLHunyuanVideo15(latent_channels=Z_DIM, block_out_channels=(8, 16, 16), layers_per_block=1,
                                      spatial_compression_ratio=4, temporal_compression_ratio=4).eval()
    tokenizer = qwen3_tokenizer()  # Qwen's chat template (no think block without enable_thinking)
    text_encoder = tiny_qwen25_vl_text(seed + 2, len(tokenizer))
    tokenizer_2, text_encoder_2 = tiny_t5(seed + 3, d_model=TEXT_WIDTH, tokenizer=ByT5Tokenizer())
    pipe = HunyuanVideo15Pipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=denoiser, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler.from_config({**HUNYUANVIDEO15_SCHEDULER_CONFIG, **(scheduler or {})}),
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, guider=ClassifierFreeGuidance(guidance_scale=guidance_scale),
    )
    prefix = [{"role": "system", "content": pipe.system_message}, {"role": "user", "content": ""}]
    text = tokenizer.apply_chat_template(prefix, tokenize=False)
    pipe.prompt_template_encode_start_idx = len(tokenizer(text[: text.rindex("<|im_start|>user\n") + 17]).input_ids)
    pipe.tokenizer_max_length, pipe.tokenizer_2_max_length, pipe.vision_num_semantic_tokens = text_tokens, glyph_tokens, 4
    return pipe
