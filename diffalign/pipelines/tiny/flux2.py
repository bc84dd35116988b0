"""A tiny random-init ``Flux2KleinPipeline`` (FLUX.2 [klein] architecture) for tests.

Real classes with small widths: a ``Flux2Transformer2DModel`` with one double and one single block and
no guidance embedding (as klein), a two-level ``AutoencoderKLFlux2`` (4 latent channels, so 16 after the
2x2 patchify) whose batch-norm statistics are set to non-trivial values, a 27-layer ``Qwen3ForCausalLM``
of width 8 (the pipeline stacks hidden states 9, 18 and 27) over the offline tiny tokenizer with Qwen3's
chat template, and a flow-matching scheduler with dynamic shifting (the pipeline computes ``mu`` itself).
"""
from __future__ import annotations

from typing import Any

import torch

#: dynamic shifting on, as the FLUX.2 checkpoints' schedulers; the pipeline passes its own ``mu``
#: (``compute_empirical_mu``), so only ``use_dynamic_shifting`` and the exponential time shift matter.
FLUX2_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "time_shift_type": "exponential",
}
TEXT_WIDTH, TEXT_LAYERS = 8, 27


def build(seed: int = 0, *, sample_size: int = 16, is_distilled: bool = False,
          transformer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None):
    """A tiny ``Flux2KleinPipeline``; deterministic for ``seed`` (``sample_size``: default VAE-latent
    side, images twice as large). ``is_distilled=True`` is the step-distilled klein (no CFG)."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel

    from diffalign.pipelines.tiny.qwen3 import qwen3_tokenizer, tiny_qwen3

    torch.manual_seed(seed)
    config = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
                  num_attention_heads=2, joint_attention_dim=3 * TEXT_WIDTH, timestep_guidance_channels=16,
                  axes_dims_rope=(2, 2, 2, 2), guidance_embeds=False)
    config.update(transformer or {})
    denoiser = Flux2Transformer2DModel(**config).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLFlux2(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                             block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, latent_channels=4,
                             sample_size=32, use_quant_conv=False, use_post_quant_conv=False).eval()
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():  # a trained VAE's latent statistics are not 0 / 1
        vae.bn.running_mean.copy_(0.5 * torch.randn(vae.bn.running_mean.shape, generator=gen))
        vae.bn.running_var.copy_(0.5 + torch.rand(vae.bn.running_var.shape, generator=gen))
    tokenizer = qwen3_tokenizer()
    text_encoder = tiny_qwen3(seed + 3, len(tokenizer), hidden_size=TEXT_WIDTH, num_layers=TEXT_LAYERS)
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config({**FLUX2_SCHEDULER_CONFIG, **(scheduler or {})}),
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=denoiser, is_distilled=is_distilled,
    )
    pipe.default_sample_size = sample_size  # Flux2KleinPipeline hard-codes 128 (1024 px at factor 8)
    return pipe
