"""A tiny random-init T5 encoder and its offline tokenizer, shared by the tiny SD3 and CogVideoX builds."""
from __future__ import annotations

import torch


def tiny_t5(seed: int, d_model: int = 32, *, model_max_length: int = 512, num_layers: int = 2, tokenizer=None):
    """``(tokenizer, T5EncoderModel)``: the tiny real T5 tokenizer of ``diffalign.pipelines.tokenizers``
    (or ``tokenizer``, e.g. a byte-level ``ByT5Tokenizer``) and a T5 v1.1-style encoder (gated-GELU
    feed-forward, relative attention) of width ``d_model`` over its vocabulary."""
    from transformers import T5Config, T5EncoderModel

    from diffalign.pipelines.tokenizers import t5_tokenizer

    tokenizer = tokenizer if tokenizer is not None else t5_tokenizer(model_max_length=model_max_length)
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // 4,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return tokenizer, T5EncoderModel(config).eval()


__all__ = ["tiny_t5"]
