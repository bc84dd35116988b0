"""Denoising losses of the two families, computed through each pipeline's own prompt encoder so
that training sees exactly the conditioning the pipeline builds at sampling time."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_snr


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over every non-batch element: shape [B]."""
    return F.mse_loss(pred.float(), target.float(), reduction="none").flatten(1).mean(1)


def sd_denoising_loss(pipe, latents: torch.Tensor, captions: list[str], generator: torch.Generator, snr_gamma: float | None = None) -> torch.Tensor:
    """Denoising loss of a ``StableDiffusionPipeline`` at uniform timesteps, for the scheduler's
    ``prediction_type`` (``epsilon`` or ``v_prediction``), with Min-SNR-gamma weighting
    (min(SNR, gamma)/SNR for epsilon, min(SNR, gamma)/(SNR + 1) for v; ``None``, the default: plain
    mean). With v-prediction the plain loss weighs the x0 error by SNR + 1 >= 1 at every step;
    Min-SNR's min(SNR, gamma) nearly zeroes the high-noise steps (SNR ~ 0.002 at t = 800 on the
    linear schedule), and a model trained so ignores the prompt where it sets layout and colours."""
    embeds, _ = pipe.encode_prompt(captions, latents.device, 1, False)
    scheduler = pipe.scheduler
    noise = torch.randn(latents.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noisy = scheduler.add_noise(latents, noise, t)
    v_prediction = scheduler.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, t) if v_prediction else noise
    errors = per_sample_mse(pipe.unet(noisy, t, embeds).sample, target)
    if snr_gamma is None:
        return errors.mean()
    snr = compute_snr(scheduler, t)
    return (errors * torch.clamp(snr, max=snr_gamma) / (snr + 1 if v_prediction else snr)).mean()


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The flow scheduler's timestep shift: sigma = shift*u / (1 + (shift-1)*u)."""
    return shift * u / (1 + (shift - 1) * u)


def sd3_flow_loss(pipe, latents: torch.Tensor, captions: list[str], generator: torch.Generator, t5_tokens: int) -> torch.Tensor:
    """Rectified-flow velocity loss of a ``StableDiffusion3Pipeline``: x_t = (1-s)x0 + s*noise,
    target noise - x0, s logit-normal then shifted like the pipeline's scheduler. ``t5_tokens`` is
    the ``max_sequence_length`` the pipeline pads its T5 stream to (256 by default at sampling)."""
    embeds, _, pooled, _ = pipe.encode_prompt(
        captions, None, None, device=latents.device, do_classifier_free_guidance=False, max_sequence_length=t5_tokens
    )
    b = latents.shape[0]
    u = compute_density_for_timestep_sampling("logit_normal", b, logit_mean=0.0, logit_std=1.0, generator=generator)
    sigmas = shifted_sigmas(u, pipe.scheduler.config.shift).view(b, 1, 1, 1)
    noise = torch.randn(latents.shape, generator=generator)
    noisy = (1 - sigmas) * latents + sigmas * noise
    timesteps = sigmas.flatten() * pipe.scheduler.config.num_train_timesteps
    pred = pipe.transformer(hidden_states=noisy, encoder_hidden_states=embeds, pooled_projections=pooled, timestep=timesteps).sample
    return per_sample_mse(pred, noise - latents).mean()


#: latent positions farther than this (RMS over channels, in unit-RMS latents) from their clip's background
#: latent count as object positions for ``object_weight`` (on the shipped shapes-cogvideox VAE: IoU 0.75 with
#: the rendered objects' pixel masks, 97 % of object positions found)
OBJECT_LATENT_DISTANCE = 0.5


def object_latent_mask(latents: torch.Tensor, threshold: float = OBJECT_LATENT_DISTANCE) -> torch.Tensor:
    """[B, F, C, h, w] latents -> [B, F, 1, h, w] mask (float 0/1) of the positions that differ from the clip's
    background: the background latent is the per-channel median over every position of the clip (the shapes
    world's flat grey covers most of each frame)."""
    background = latents.flatten(3).median(3).values.median(1).values[:, None, :, None, None]
    return ((latents - background).float().pow(2).mean(2, keepdim=True).sqrt() > threshold).float()


def object_weighted_loss(errors: torch.Tensor, parts: dict, frames: torch.Tensor, object_weight: float) -> torch.Tensor:
    """The mean of a video adapter's per-sample ``errors``, or with ``object_weight=k > 0`` the squared error of
    ``parts`` (``prediction``, ``target``) with the object positions of ``frames`` [B, F, C, h, w]
    (:func:`object_latent_mask`) weighed ``1 + k``, normalised by the weights' sum per clip."""
    if not object_weight:
        return errors.mean()
    weight = (1 + object_weight * object_latent_mask(frames)).expand_as(parts["target"])
    squared = (parts["prediction"].float() - parts["target"].float()) ** 2
    return ((squared * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)).mean()


def cogvideox_loss(pipe, latents: torch.Tensor, captions: list[str], generator: torch.Generator, adapter=None,
                   object_weight: float = 0.0) -> torch.Tensor:
    """v-prediction loss of a ``CogVideoXPipeline`` on VAE-layout latents [B, C, F, h, w], through
    the project's one training forward (:meth:`CogVideoXAdapter.training_errors`: CogVideoX's
    DDIM training schedule with its SNR shift, uniform timesteps, v target). The prompts go through
    the pipeline's own ``encode_prompt`` at the adapter's ``max_sequence_length`` with gradients, so
    the T5 encoder trains with the transformer.

    ``object_weight=k > 0`` weighs the squared error at object positions (:func:`object_latent_mask`) by
    ``1 + k`` and normalises by the weights' sum per clip, so the small moving shapes, a sixth of the latent
    grid, are not outweighed by the flat background."""
    from diffalign.pipelines.cogvideox import CogVideoXAdapter
    from diffalign.pipelines.conditioning import PromptEmbeds

    if object_weight < 0:
        raise ValueError(f"object_weight must be >= 0, got {object_weight}")
    adapter = adapter or CogVideoXAdapter(pipe)
    embeds, _ = pipe.encode_prompt(prompt=captions, do_classifier_free_guidance=False,
                                   max_sequence_length=adapter.max_sequence_length, device=latents.device)
    frames = latents.permute(0, 2, 1, 3, 4)
    errors, parts = adapter.training_errors(frames, PromptEmbeds({"prompt_embeds": embeds}), generator=generator)
    return object_weighted_loss(errors, parts, frames, object_weight)


def wan_flow_loss(pipe, latents: torch.Tensor, captions: list[str], generator: torch.Generator, adapter=None,
                  object_weight: float = 0.0) -> torch.Tensor:
    """Rectified-flow velocity loss of a ``WanPipeline`` on VAE-layout latents [B, C, F, h, w] (normalised with
    the VAE's ``latents_mean`` / ``latents_std``), through the project's one training forward
    (:meth:`WanAdapter.training_errors`: the adapter's flow schedule and sigma sampling). The prompts go through
    the pipeline's own ``encode_prompt`` at the adapter's ``max_sequence_length`` with gradients, so the UMT5
    encoder trains with the transformer. ``object_weight``: as :func:`cogvideox_loss`."""
    from diffalign.pipelines.conditioning import PromptEmbeds
    from diffalign.pipelines.wan import WanAdapter

    if object_weight < 0:
        raise ValueError(f"object_weight must be >= 0, got {object_weight}")
    adapter = adapter or WanAdapter(pipe)
    embeds, _ = pipe.encode_prompt(prompt=captions, do_classifier_free_guidance=False,
                                   max_sequence_length=adapter.max_sequence_length, device=latents.device)
    frames = latents.permute(0, 2, 1, 3, 4)
    errors, parts = adapter.training_errors(frames, PromptEmbeds({"prompt_embeds": embeds}), generator=generator)
    return object_weighted_loss(errors, parts, frames, object_weight)


def flux2_flow_loss(pipe, latents: torch.Tensor, captions: list[str], generator: torch.Generator, tokens: int) -> torch.Tensor:
    """Rectified-flow velocity loss of a ``Flux2KleinPipeline`` on its normalised, 2x2-patchified
    latents [B, 4C, h, w]: the same sigmas as :func:`sd3_flow_loss` (logit-normal, shifted by the
    scheduler's static ``shift``), the transformer called as the pipeline calls it (packed tokens,
    ``t / 1000``, text ids ``(0, 0, 0, l)`` and latent ids ``(0, row, column, 0)``). ``tokens`` is the
    Qwen3 ``max_sequence_length`` (every prompt is padded to it)."""
    embeds, _ = pipe.encode_prompt(prompt=captions, device=latents.device, max_sequence_length=tokens)
    b = latents.shape[0]
    u = compute_density_for_timestep_sampling("logit_normal", b, logit_mean=0.0, logit_std=1.0, generator=generator)
    sigmas = shifted_sigmas(u, pipe.scheduler.config.shift).view(b, 1, 1, 1)
    noise = torch.randn(latents.shape, generator=generator)
    noisy = (1 - sigmas) * latents + sigmas * noise
    pred = pipe.transformer(
        hidden_states=pipe._pack_latents(noisy), timestep=sigmas.flatten(), guidance=None, encoder_hidden_states=embeds,
        txt_ids=pipe._prepare_text_ids(embeds), img_ids=pipe._prepare_latent_ids(noisy), return_dict=False,
    )[0]
    return per_sample_mse(pred, pipe._pack_latents(noise - latents)).mean()
