"""A tiny random-init ``LTX2Pipeline`` (LTX-2 audio-video architecture) for tests.

Real classes with small widths: a one-layer ``LTX2VideoTransformer3DModel`` (video and audio streams,
8 video latent channels, patch 1), the causal ``AutoencoderKLLTX2Video`` at 8x spatial and 2x temporal
compression (patch 4 and one spatio-temporal level; LTX-2's is 32x / 8x) with non-trivial
``latents_mean`` / ``latents_std`` so the normalisation is tested, a small ``AutoencoderKLLTX2Audio``
and ``LTX2Vocoder`` (the pipeline needs them; the video-only adapter never runs them), one-layer text
connectors (``LTX2TextConnectors``, 8 learned registers), a two-layer ``Gemma3ForConditionalGeneration``
of width 16 (with a one-layer SigLIP vision tower, as the class has) over the offline tiny Qwen2 BPE
tokenizer (the pipeline only tokenizes with left padding and a mask; Gemma's tokenizer is not needed),
and a flow-matching scheduler with LTX-2's dynamic-shift config.
"""
from __future__ import annotations

from typing import Any

import torch

#: a dynamic-shift flow-matching config with the LTX pipelines' shift terms (the defaults ``LTX2Pipeline`` falls
#: back to: base 0.95 / max 2.05 over 1024..4096 tokens) and LTX's terminal sigma 0.1.
LTX2_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05,
    "base_image_seq_len": 1024, "max_image_seq_len": 4096, "shift_terminal": 0.1,
}
Z_DIM, TEXT_WIDTH, TEXT_LAYERS = 8, 16, 2
#: LTX-2.3's architecture switches on the tiny transformer and connectors: gated attention, the
#: cross-attention modulation by sigma, split RoPE, and per-modality text projections in the connectors
#: (whose outputs then have the streams' widths, 16 and 8, and skip the transformer's caption projection).
LTX23_TRANSFORMER: dict[str, Any] = dict(cross_attn_mod=True, audio_cross_attn_mod=True, gated_attn=True,
                                         audio_gated_attn=True, use_prompt_embeddings=False,
                                         audio_cross_attention_dim=8, rope_type="split")
LTX23_CONNECTORS: dict[str, Any] = dict(per_modality_projections=True, video_hidden_dim=16, audio_hidden_dim=8,
                                        audio_connector_attention_head_dim=4, video_gated_attn=True,
                                        audio_gated_attn=True, rope_type="split")


def tiny_gemma3(seed: int, vocab_size: int, hidden_size: int = TEXT_WIDTH, num_layers: int = TEXT_LAYERS):
    """``Gemma3ForConditionalGeneration`` from its config classes (tiny text model and SigLIP tower), no download."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    torch.manual_seed(seed)
    text = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                            num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=1,
                            head_dim=hidden_size // 2, max_position_embeddings=1024, sliding_window=64)
    vision = SiglipVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                                image_size=14, patch_size=7)
    return Gemma3ForConditionalGeneration(Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)).eval()


def build(seed: int = 0, *, transformer: dict[str, Any] | None = None, connectors: dict[str, Any] | None = None,
          scheduler: dict[str, Any] | None = None):
    """A tiny ``LTX2Pipeline``; deterministic for ``seed``. ``transformer`` / ``connectors``: config
    overrides (e.g. LTX-2.3's, :data:`LTX23_TRANSFORMER` and :data:`LTX23_CONNECTORS`)."""
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                           LTX2Pipeline, LTX2VideoTransformer3DModel)
    from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder

    from diffalign.pipelines.tokenizers import qwen2_tokenizer

    torch.manual_seed(seed)
    config = dict(in_channels=Z_DIM, out_channels=Z_DIM, num_attention_heads=2, attention_head_dim=8,
                  cross_attention_dim=16, audio_in_channels=8, audio_out_channels=8, audio_num_attention_heads=2,
                  audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=1, caption_channels=16,
                  vae_scale_factors=(2, 8, 8))
    config.update(transformer or {})
    denoiser = LTX2VideoTransformer3DModel(**config).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLLTX2Video(
        latent_channels=Z_DIM, block_out_channels=(8,), decoder_block_out_channels=(8,), layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1), spatio_temporal_scaling=(True,), decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False), downsample_type=("spatiotemporal",), upsample_type=("spatiotemporal",),
        upsample_residual=(True,), upsample_factor=(2,), down_block_types=("LTX2VideoDownBlock3D",), patch_size=4,
    ).eval()
    with torch.no_grad():  # LTX-2's per-channel statistics are not 0 / 1: make the normalisation matter
        vae.latents_mean.copy_(torch.linspace(-0.3, 0.4, Z_DIM))
        vae.latents_std.copy_(torch.linspace(0.5, 1.5, Z_DIM))
    torch.manual_seed(seed + 2)
    audio_vae = AutoencoderKLLTX2Audio(base_channels=8, ch_mult=(1, 2), num_res_blocks=1, latent_channels=2,
                                       mel_bins=16).eval()
    vocoder = LTX2Vocoder(in_channels=32, hidden_channels=8, upsample_kernel_sizes=[4], upsample_factors=[2],
                          resnet_kernel_sizes=[3], resnet_dilations=[[1]], output_sampling_rate=16000).eval()
    torch.manual_seed(seed + 3)
    connector_config = dict(
        caption_channels=TEXT_WIDTH, text_proj_in_factor=TEXT_LAYERS + 1, video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8, video_connector_num_layers=1, video_connector_num_learnable_registers=8,
        audio_connector_num_attention_heads=2, audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=8,
    )
    connector_config.update(connectors or {})
    connectors = LTX2TextConnectors(**connector_config).eval()
    tokenizer = qwen2_tokenizer()
    text_encoder = tiny_gemma3(seed + 4, len(tokenizer))
    return LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config({**LTX2_SCHEDULER_CONFIG, **(scheduler or {})}),
        vae=vae, audio_vae=audio_vae, text_encoder=text_encoder, tokenizer=tokenizer, connectors=connectors,
        transformer=denoiser, vocoder=vocoder,
    )
