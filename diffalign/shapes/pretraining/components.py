"""The small architectures of the shipped shapes pipelines (random init, deterministic per seed).

Both families share the image side: 64x64 RGB renders, an f=4 ``AutoencoderKL`` with 8 latent
channels (16x16x8 latents) and the real offline CLIP tokenizer (49,408 ids) padded to 16 tokens
(the longest shapes prompt is 12). Text encoders are narrow because their token-embedding table
(49,408 rows) dominates the parameter count and the package-size budget.
"""
from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from diffalign.pipelines.tokenizers import CLIP_VOCAB_SIZE, clip_tokenizer

IMAGE_SIZE = 64
LATENT_SIZE = 16
LATENT_CHANNELS = 8
TOKEN_LENGTH = 16
"""Tokenizer ``model_max_length``: shapes prompts take at most 12 CLIP tokens with BOS/EOS."""
FLOW_SHIFT = 2.0
"""Timestep shift of the SD3 flow scheduler (used identically for training and sampling)."""


def build_vae(channels=(16, 32, 64)) -> AutoencoderKL:
    """f = 2**(len(channels)-1) autoencoder for 64x64 RGB with ``LATENT_CHANNELS`` latents."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=tuple(channels),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )


def _clip_config(hidden: int, layers: int, heads: int, projection: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=TOKEN_LENGTH,
        projection_dim=projection or hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


TEXT_EMBEDDING_STD = 1.0
"""Initial std of the text encoders' token and position embeddings. CLIP's default (0.02) leaves
them far below what the randomly initialised layers add to the residual stream, so every token's
output starts as nearly the same average and the denoiser learns to ignore the prompt; at 1.0 each
token's identity and position dominate from the first step."""


@torch.no_grad()
def spread_text_embeddings(text_encoder: torch.nn.Module, std: float = TEXT_EMBEDDING_STD) -> None:
    """Re-initialise a CLIP text encoder's token and position embeddings with N(0, ``std``)."""
    model = getattr(text_encoder, "text_model", text_encoder)  # transformers < 5 nests a text_model
    embeddings = model.embeddings
    embeddings.token_embedding.weight.normal_(0.0, std)
    embeddings.position_embedding.weight.normal_(0.0, std)


def build_sd_unet(channels=(32, 64, 64), cross_attention_dim: int = 48, heads: int = 4) -> UNet2DConditionModel:
    """Epsilon UNet on 16x16x4 latents: plain ResNet block at 16x16, cross-attention blocks below."""
    n = len(channels)
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=tuple(channels),
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=heads,  # diffusers' UNet reads this as the number of heads
        norm_num_groups=8,
    )


def build_sd_pipeline(
    seed: int = 0, unet_channels=(32, 64, 64), text_hidden: int = 48, text_layers: int = 2, vae_channels=(16, 32, 64),
    prediction_type: str = "v_prediction",
) -> StableDiffusionPipeline:
    """A random-init ``StableDiffusionPipeline`` of the shapes-sd architecture (DDIM scheduler,
    linear betas 1e-4..0.02, no safety checker). ``v_prediction`` by default: with epsilon
    prediction a small model's x0 estimate at the first (near pure-noise) steps is divided by
    sqrt(alpha_bar) ~ 0.01 and sampling diverges."""
    torch.manual_seed(seed)
    vae = build_vae(vae_channels)
    text_encoder = CLIPTextModel(_clip_config(text_hidden, text_layers, heads=4))
    spread_text_embeddings(text_encoder)
    unet = build_sd_unet(unet_channels, cross_attention_dim=text_hidden)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0001,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(model_max_length=TOKEN_LENGTH),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sd3_transformer(layers: int = 4, heads: int = 4, head_dim: int = 32, text_width: int = 32) -> SD3Transformer2DModel:
    """MMDiT on 16x16x4 latents (patch 2 -> 64 image tokens); ``text_width`` = both CLIP widths."""
    return SD3Transformer2DModel(
        sample_size=LATENT_SIZE,
        patch_size=2,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=text_width,
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=text_width,
        pos_embed_max_size=LATENT_SIZE,
    )


def build_sd3_pipeline(
    seed: int = 0, layers: int = 4, heads: int = 4, head_dim: int = 32, text_hidden: int = 16, vae_channels=(16, 32, 64)
) -> StableDiffusion3Pipeline:
    """A random-init ``StableDiffusion3Pipeline`` of the shapes-sd3 architecture: two CLIP text
    encoders with projection (width ``text_hidden`` each), a tiny T5 encoder (width
    ``2 * text_hidden``, the project's small real T5 tokenizer) and the flow-matching Euler
    scheduler with shift :data:`FLOW_SHIFT`. The T5 stream is a real component rather than ``None``
    because diffusers only loads a folder without it when ``text_encoder_3=None`` is passed."""
    from diffalign.pipelines.tiny.t5 import tiny_t5

    torch.manual_seed(seed)
    vae = build_vae(vae_channels)
    text_encoder = CLIPTextModelWithProjection(_clip_config(text_hidden, 2, heads=2))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(text_hidden, 2, heads=2))
    spread_text_embeddings(text_encoder)
    spread_text_embeddings(text_encoder_2)
    tokenizer_3, text_encoder_3 = tiny_t5(seed + 3, d_model=2 * text_hidden, model_max_length=TOKEN_LENGTH)
    torch.manual_seed(seed + 4)
    transformer = build_sd3_transformer(layers, heads, head_dim, text_width=2 * text_hidden)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=FLOW_SHIFT),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(model_max_length=TOKEN_LENGTH),
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer(model_max_length=TOKEN_LENGTH),
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )


VIDEO_SIZE = 32
VIDEO_FRAMES = 9
"""shapes-cogvideox clips: 9 frames (CogVideoX needs ``1 + 4k``; the moving-shapes default) of 32x32."""


def build_cogvideox_pipeline(
    seed: int = 0, layers: int = 4, heads: int = 4, head_dim: int = 16, vae_channels=(16, 32, 32),
    latent_channels: int = LATENT_CHANNELS, temporal_compression: int = 2, patch_size: int = 2, size: int = VIDEO_SIZE,
):
    """A random-init ``CogVideoXPipeline`` of the shapes-cogvideox architecture, built by the tiny
    CogVideoX builder (:func:`diffalign.pipelines.tiny.cogvideox.build`: rotary 3D-attention DiT,
    causal ``AutoencoderKLCogVideoX``, tiny T5 with the small real T5 tokenizer, CogVideoX-2B's
    scheduler) with wider settings: 32x32 clips of :data:`VIDEO_FRAMES` frames, an f=4 spatial /
    ``temporal_compression``x temporal VAE with ``latent_channels`` channels (9 frames -> 5 latent
    frames of 8x8) and a ``layers``-block transformer of ``heads`` x ``head_dim`` width. ``size``: the clips' side in
    pixels (the transformer's and VAE's recorded sample size)."""
    from diffalign.pipelines.tiny.cogvideox import build

    spatial = 2 ** (len(vae_channels) - 1)
    return build(
        seed, sample_size=size // spatial, sample_frames=VIDEO_FRAMES,
        transformer=dict(num_attention_heads=heads, attention_head_dim=head_dim, time_embed_dim=heads * head_dim,
                         num_layers=layers, in_channels=latent_channels, out_channels=latent_channels,
                         temporal_compression_ratio=temporal_compression, patch_size=patch_size),
        vae=dict(block_out_channels=tuple(vae_channels), latent_channels=latent_channels,
                 down_block_types=("CogVideoXDownBlock3D",) * len(vae_channels),
                 up_block_types=("CogVideoXUpBlock3D",) * len(vae_channels),
                 temporal_compression_ratio=temporal_compression, norm_num_groups=min(8, vae_channels[0]),
                 sample_height=size, sample_width=size, scaling_factor=1.0),
    )


WAN_FLOW_SHIFT = 2.0
"""shapes-wan's flow-matching shift (shapes-sd3's; Wan2.1 uses 3.0 at 480p)."""


def build_wan_pipeline(
    seed: int = 0, layers: int = 4, heads: int = 4, head_dim: int = 16, vae_base_dim: int = 16,
    latent_channels: int = LATENT_CHANNELS, patch_size: int = 2, text_width: int = 32, text_layers: int = 2,
):
    """A random-init ``WanPipeline`` of the shapes-wan architecture (real Wan2.1 classes, small widths):
    32x32 clips of :data:`VIDEO_FRAMES` frames; a causal ``AutoencoderKLWan`` with two levels
    (``base_dim`` ``vae_base_dim``, 2x spatial and 2x temporal compression: 9 frames -> 5 latent frames of
    16x16, ``latent_channels`` channels; ``latents_mean`` / ``latents_std`` are set by the pretraining
    script); a ``layers``-block ``WanTransformer3DModel`` of ``heads`` x ``head_dim`` width with spatial
    patch ``patch_size`` (2: 8x8x5 = 320 video tokens) and cross-attention to a ``text_layers``-block UMT5
    encoder of width ``text_width`` over the small real T5 tokenizer; a ``FlowMatchEulerDiscreteScheduler``
    with shift :data:`WAN_FLOW_SHIFT`."""
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel

    from diffalign.pipelines.tiny.wan import tiny_umt5

    torch.manual_seed(seed)
    width = heads * head_dim
    transformer = WanTransformer3DModel(
        patch_size=(1, patch_size, patch_size), num_attention_heads=heads, attention_head_dim=head_dim,
        in_channels=latent_channels, out_channels=latent_channels, text_dim=text_width, freq_dim=64,
        ffn_dim=4 * width, num_layers=layers, rope_max_seq_len=64,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(
        base_dim=vae_base_dim, z_dim=latent_channels, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
        latents_mean=[0.0] * latent_channels, latents_std=[1.0] * latent_channels,
        scale_factor_temporal=2, scale_factor_spatial=2,
    )
    tokenizer, text_encoder = tiny_umt5(seed + 2, d_model=text_width, num_layers=text_layers)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=WAN_FLOW_SHIFT))


def denoiser(pipe) -> torch.nn.Module:
    """The pipeline's denoising network (``unet`` or ``transformer``)."""
    return pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer


def text_encoders(pipe) -> list[torch.nn.Module]:
    """The pipeline's (trainable) text encoders."""
    names = ("text_encoder", "text_encoder_2", "text_encoder_3")
    return [m for m in (getattr(pipe, n, None) for n in names) if m is not None]


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


FLUX2_TEXT_WIDTH, FLUX2_TEXT_LAYERS = 16, 27
"""shapes-flux2's Qwen3 text encoder: width 16, 27 layers (the pipeline stacks hidden states 9, 18
and 27, so it needs at least 27; at width 16 a layer costs ~3 k parameters)."""
FLUX2_TEXT_TOKENS = 40
"""Qwen3 tokens per prompt of shapes-flux2 (``max_sequence_length``): the chat template takes 23 and
the longest shapes prompt 10 more; the pipeline's default 512 would make every step ~5x costlier."""


def build_flux2_vae(channels=(16, 32, 64)):
    """The shapes VAE (:func:`build_vae`'s architecture and weights layout) as FLUX.2's
    ``AutoencoderKLFlux2``: the same encoder/decoder, plus the batch-norm statistics of the 2x2
    patchified latents that the klein pipeline normalises with (set by ``normalise_flux2_latents``)."""
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=tuple(channels), layers_per_block=1, latent_channels=LATENT_CHANNELS,
        norm_num_groups=8, sample_size=IMAGE_SIZE,
    )


def build_flux2_pipeline(
    seed: int = 0, layers: int = 2, single_layers: int = 2, heads: int = 4, head_dim: int = 32,
    text_hidden: int = FLUX2_TEXT_WIDTH, text_layers: int = FLUX2_TEXT_LAYERS, vae_channels=(16, 32, 64),
):
    """A random-init ``Flux2KleinPipeline`` (FLUX.2 [klein] architecture, undistilled: CFG against the
    empty prompt) of the shapes-flux2 architecture: ``Flux2Transformer2DModel`` without guidance
    embedding on the 2x2-patchified 16x16x8 latents (64 tokens of 32 channels), ``layers`` double and
    ``single_layers`` single blocks of ``heads`` x ``head_dim``; a Qwen3 text encoder (width
    ``text_hidden``, ``text_layers`` layers, token embeddings spread like the CLIP ones) over the
    project's offline Qwen2 tokenizer with Qwen3's chat template; the flow-matching Euler scheduler
    with the static shift :data:`FLOW_SHIFT` of shapes-sd3 (the FLUX.2 checkpoints' dynamic shift would
    be exp(mu) = 6.2 at 64 image tokens and 20 steps, which leaves one Euler step from sigma 0.25 to 0;
    with ``use_dynamic_shifting`` off the scheduler ignores the ``mu`` the pipeline passes)."""
    from diffusers import Flux2KleinPipeline, Flux2Transformer2DModel

    from diffalign.pipelines.tiny.qwen3 import qwen3_tokenizer, tiny_qwen3

    torch.manual_seed(seed)
    vae = build_flux2_vae(vae_channels)
    tokenizer = qwen3_tokenizer()
    text_encoder = tiny_qwen3(seed + 3, len(tokenizer), hidden_size=text_hidden, num_layers=text_layers)
    with torch.no_grad():
        text_encoder.get_input_embeddings().weight.normal_(0.0, TEXT_EMBEDDING_STD)
    torch.manual_seed(seed + 4)
    rope = head_dim // 4
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=layers, num_single_layers=single_layers,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=3 * text_hidden,
        timestep_guidance_channels=64, axes_dims_rope=(rope,) * 4, guidance_embeds=False,
    )
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=FLOW_SHIFT),
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, is_distilled=False,
    )
