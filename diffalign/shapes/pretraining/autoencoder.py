"""VAE stage of shapes pretraining: reconstruction training and latent normalisation."""
from __future__ import annotations

import time
from typing import Callable

import torch
from diffusers import AutoencoderKL

from diffalign.shapes.vocab import BACKGROUND


def object_mask(images: torch.Tensor, tolerance: float = 0.05) -> torch.Tensor:
    """[B, 1, H, W] (or [B, 1, T, H, W] for clips) float mask of the pixels of ``images`` ([-1, 1],
    channels second) that differ from the background."""
    background = torch.tensor(BACKGROUND, dtype=images.dtype).view(1, 3, *([1] * (images.ndim - 2))) / 127.5 - 1.0
    return ((images - background).abs() > tolerance).any(dim=1, keepdim=True).to(images.dtype)


def train_vae(
    vae: AutoencoderKL,  # or AutoencoderKLCogVideoX on [B, 3, T, H, W] clips
    batches: Callable[[int], tuple[torch.Tensor, list[str]]],
    steps: int,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    log: Callable[[dict], None] = print,
    log_every: int = 50,
    crop: int | None = None,
    object_weight: float = 9.0,
    decoder_only: bool = False,
) -> AutoencoderKL:
    """Train ``vae`` for ``steps`` on ``batches(step)`` images with MSE + L1 reconstruction plus a
    small KL term (weight ``kl_weight``); returns it in eval mode with gradients off. Pixels that
    are not background weigh ``1 + object_weight``: the objects are a small part of each render
    and the judge reads exactly their colour and outline. ``crop`` trains on random windows.
    ``decoder_only`` keeps the encoder (hence the latent space a denoiser may already be trained
    on) fixed and sharpens the decoder alone."""
    vae.train().requires_grad_(True)
    if decoder_only:
        vae.encoder.requires_grad_(False)
        if getattr(vae, "quant_conv", None) is not None:
            vae.quant_conv.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    start = time.time()
    for step in range(steps):
        images, _ = batches(step)
        if crop is not None and crop < images.shape[-1]:
            y, x = torch.randint(0, images.shape[-1] - crop + 1, (2,), generator=torch.Generator().manual_seed(step))
            images = images[..., y : y + crop, x : x + crop]
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample()).sample
        weight = 1.0 + object_weight * object_mask(images)
        mse = (recon - images).pow(2).mean()
        loss = (weight * ((recon - images).pow(2) + (recon - images).abs())).mean() + kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            log({"stage": "vae", "step": step, "mse": mse.item(), "loss": loss.item(), "elapsed_s": time.time() - start})
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def copy_decoder(source: AutoencoderKL, target: AutoencoderKL) -> None:
    """Copy the decoder half (``post_quant_conv`` and ``decoder``) of ``source`` into ``target``."""
    own = target.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith(("decoder.", "post_quant_conv.")):
            own[key].copy_(value)


@torch.no_grad()
def latent_stats(vae: AutoencoderKL, images: torch.Tensor) -> tuple[float, float, float]:
    """(mean, std, rms) of the raw latents (posterior samples) of ``images``."""
    z = vae.encode(images).latent_dist.sample()
    return z.mean().item(), z.std().item(), z.pow(2).mean().sqrt().item()


@torch.no_grad()
def normalise_channel_latents(vae, clips: torch.Tensor) -> None:
    """Write per-channel ``latents_mean`` / ``latents_std`` (over the posterior samples of ``clips``) into a
    Wan-style VAE's config, the statistics ``WanPipeline`` un-normalises its latents with, so the pipeline's
    latents ``(z - mean) / std`` have zero mean and unit variance per channel."""
    z = vae.encode(clips).latent_dist.sample()
    dims = [d for d in range(z.ndim) if d != 1]
    vae.register_to_config(latents_mean=z.mean(dims).tolist(), latents_std=z.std(dims).tolist())


def normalise_latents(vae: AutoencoderKL, images: torch.Tensor, centred: bool) -> None:
    """Write ``scaling_factor`` (and ``shift_factor`` when ``centred``, as SD3 does) into the VAE
    config so that the pipeline's latents have zero mean / unit variance (``centred``) or unit RMS
    (SD's convention, no shift)."""
    mean, std, rms = latent_stats(vae, images)
    if centred:
        vae.register_to_config(scaling_factor=1.0 / std, shift_factor=mean)
    else:
        vae.register_to_config(scaling_factor=1.0 / rms, shift_factor=None)


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
) -> torch.Tensor:
    """Pipeline-space latents of ``images`` (posterior sample, or its mean with ``sample=False``;
    shifted and scaled per the config)."""
    dist = vae.encode(images).latent_dist
    z = dist.sample(generator) if sample else dist.mean
    if hasattr(vae, "bn"):  # FLUX.2's AutoencoderKLFlux2: 2x2 patchify, then its batch-norm statistics
        mean, std = flux2_latent_norm(vae)
        return (patchify_latents(z) - mean) / std
    if vae.config.get("latents_mean") is not None:  # Wan-style VAEs: per-channel statistics in the config
        shape = (1, -1) + (1,) * (z.ndim - 2)
        mean = torch.tensor(vae.config.latents_mean, dtype=z.dtype).view(shape)
        std = torch.tensor(vae.config.latents_std, dtype=z.dtype).view(shape)
        return (z - mean) / std
    shift = vae.config.shift_factor or 0.0
    return (z - shift) * vae.config.scaling_factor


def patchify_latents(z: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, 4C, H/2, W/2], each 2x2 patch's channels together (``Flux2KleinPipeline``'s
    ``_patchify_latents``)."""
    from diffusers import Flux2KleinPipeline

    return Flux2KleinPipeline._patchify_latents(z)


def flux2_latent_norm(vae) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) [1, 4C, 1, 1] the klein pipeline normalises patchified latents with:
    ``bn.running_mean`` and ``sqrt(bn.running_var + eps)``."""
    mean = vae.bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    return mean, std


@torch.no_grad()
def normalise_flux2_latents(vae, images: torch.Tensor) -> None:
    """Set an ``AutoencoderKLFlux2``'s batch-norm running statistics to the per-channel mean and
    variance of the patchified latents (posterior samples) of ``images``, so that the klein
    pipeline's latents have zero mean and unit variance per channel."""
    z = patchify_latents(vae.encode(images).latent_dist.sample())
    vae.bn.running_mean.copy_(z.mean(dim=(0, 2, 3)))
    vae.bn.running_var.copy_((z.var(dim=(0, 2, 3)) - vae.config.batch_norm_eps).clamp_min(1e-6))


@torch.no_grad()
def copy_autoencoder_kl(source: AutoencoderKL, target) -> None:
    """Load an ``AutoencoderKL``'s weights into an ``AutoencoderKLFlux2`` of the same layout (the
    encoder, decoder and quant convs are the same modules; only the batch-norm statistics are new).
    Raises ``ValueError`` naming the first mismatching key."""
    try:
        result = target.load_state_dict(source.state_dict(), strict=False)
    except RuntimeError as e:  # shapes differ
        raise ValueError(f"VAE layouts differ: {str(e).splitlines()[1].strip()}") from None
    missing = [k for k in result.missing_keys if not k.startswith("bn.")]
    if missing or result.unexpected_keys:
        raise ValueError(f"VAE layouts differ: missing {missing[:1]}, unexpected {result.unexpected_keys[:1]}")


@torch.no_grad()
def reconstruction_error(vae: AutoencoderKL, images: torch.Tensor) -> float:
    """Mean squared error of decode(encode(images)) in the [-1, 1] image range."""
    recon = vae.decode(vae.encode(images).latent_dist.mode()).sample
    return (recon - images).pow(2).mean().item()
