"""Train the shipped shapes pipelines from scratch on freshly rendered shapes-world scenes.

    python -m diffalign.shapes.pretrain --family sd  --out diffalign/pretrained/shapes-sd
    python -m diffalign.shapes.pretrain --family sd3 --out diffalign/pretrained/shapes-sd3 \
        --vae-from diffalign/pretrained/shapes-sd
    python -m diffalign.shapes.pretrain --family flux2 --out OUT \
        --vae-from diffalign/pretrained/shapes-sd3
    python -m diffalign.shapes.pretrain --family cogvideox --out diffalign/pretrained/shapes-cogvideox
    python -m diffalign.shapes.pretrain --family wan --out diffalign/pretrained/shapes-wan

Stages: (1) the VAE learns to reconstruct renders (or is taken from ``--vae-from``) and its latents
are normalised (``cogvideox`` and ``wan``: the causal 3D VAE on moving-shapes clips); (2) the denoiser and text
encoder(s) train jointly on TRAIN-split prompts (the video families: the moving-shapes TRAIN split) with 10%
empty captions (for classifier-free guidance); EMA weights are saved as fp16 safetensors in a plain
diffusers folder that ``DiffusionPipeline.from_pretrained`` loads. See docs/shapes.md.
"""
from __future__ import annotations

import argparse
import functools
import os
import random
import time

import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging

from diffalign.shapes.pretraining.autoencoder import (
    copy_autoencoder_kl,
    normalise_channel_latents,
    normalise_flux2_latents,
    normalise_latents,
    reconstruction_error,
    train_vae,
)
from diffalign.shapes.pretraining.components import (
    IMAGE_SIZE,
    VIDEO_FRAMES,
    FLUX2_TEXT_TOKENS,
    VIDEO_SIZE,
    build_cogvideox_pipeline,
    build_wan_pipeline,
    build_flux2_pipeline,
    build_sd3_pipeline,
    build_sd_pipeline,
    count_parameters,
    denoiser,
    text_encoders,
)
from diffalign.shapes.pretraining.data import LatentPool, ShapesBatches, VideoBatches
from diffalign.shapes.pretraining.loop import JsonlLog, LoopConfig, save_fp16, train_denoiser
from diffalign.shapes.pretraining.objectives import (
    cogvideox_loss,
    flux2_flow_loss,
    sd3_flow_loss,
    sd_denoising_loss,
    wan_flow_loss,
)
from diffalign.shapes.sampling import SAMPLING_FILE

TINY = {
    "sd": dict(unet_channels=(8, 16, 16), text_hidden=8, text_layers=2, vae_channels=(8, 8, 16)),
    "sd3": dict(layers=1, heads=2, head_dim=8, text_hidden=8, vae_channels=(8, 8, 16)),  # T5 width 16
    "flux2": dict(layers=1, single_layers=1, heads=2, head_dim=8, text_hidden=8, vae_channels=(8, 8, 16)),
    "cogvideox": dict(layers=1, heads=1, head_dim=16, vae_channels=(8, 8, 8), latent_channels=4),
    "wan": dict(layers=1, heads=1, head_dim=16, vae_base_dim=4, latent_channels=4, text_width=16, text_layers=1),
}
VIDEO_FAMILIES = ("cogvideox", "wan")
"""Architecture overrides of ``--tiny`` (smoke tests of this script)."""


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m diffalign.shapes.pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=("sd", "sd3", "flux2", "cogvideox", "wan"), required=True)
    p.add_argument("--out", required=True, help="folder of the final fp16 pipeline")
    p.add_argument("--checkpoint-dir", default=None, help="EMA checkpoints (default: OUT-checkpoints)")
    p.add_argument("--steps", type=int, default=3000, help="denoiser steps")
    p.add_argument("--max-minutes", type=float, default=None, help="stop the denoiser stage after this long")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--layout", default="canonical", choices=("canonical", "random"),
                   help="scene layouts of the denoiser's training data (canonical: objects on fixed slots in the "
                        "order the prompt names them, see diffalign/shapes/layouts.py and, for clips, "
                        "diffalign/shapes/video/layouts.py; random: anywhere)")
    p.add_argument("--latent-pool", type=int, default=40000,
                   help="encode this many rendered scenes once and train on random batches of them (0: render and "
                        "encode fresh scenes every step)")
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--freeze-text-encoder", action="store_true", help="keep the random-init text encoder(s) fixed")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--vae-steps", type=int, default=600)
    p.add_argument("--vae-batch-size", type=int, default=16)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--vae-from", default=None, help="pipeline folder whose trained VAE to reuse (skips VAE training)")
    p.add_argument("--vae-decoder-steps", type=int, default=0,
                   help="with --vae-from: fine-tune the reused VAE's decoder (encoder fixed) for this many steps")
    p.add_argument("--t5-tokens", default=None,
                   help="sd3 and cogvideox: T5 max_sequence_length values drawn uniformly per step (sd3 default "
                        "16,16,16,16,16,16,16,256, 256 being the pipeline's default; cogvideox default 226, its "
                        "pipeline's). For cogvideox the smallest value is recorded as the folder's sampling "
                        "max_sequence_length when it is below 226: training mostly at a short length makes a step "
                        "~4x cheaper (the text tokens join the video tokens in every attention), and a share of "
                        "226-token steps keeps the pipeline's default call working")
    p.add_argument("--sample-steps", type=int, default=20, help="recorded sampling steps (diffalign_sampling.json)")
    p.add_argument("--sample-guidance", type=float, default=5.0, help="recorded guidance scale")
    p.add_argument("--prediction-type", default="v_prediction", choices=("v_prediction", "epsilon"), help="sd only")
    p.add_argument("--init-from", default=None,
                   help="pipeline folder whose denoiser and text encoder weights start training (e.g. a checkpoint)")
    p.add_argument("--snr-gamma", type=float, default=None,
                   help="sd only: Min-SNR-gamma loss weighting (default: none, the plain loss). Min-SNR gives the "
                        "high-noise steps, where the prompt decides the layout and colours, almost no weight")
    p.add_argument("--object-weight", type=float, default=0.0,
                   help="cogvideox: extra weight k of the v-loss at object latents (error there times 1 + k; default 0: "
                        "the plain loss)")
    p.add_argument("--video-vae-channels", default=None,
                   help="cogvideox: the 3D VAE's block widths, comma-separated; spatial compression 2**(n-1) "
                        "(default: the shipped architecture's)")
    p.add_argument("--video-temporal-compression", type=int, default=None,
                   help="cogvideox: the 3D VAE's (and transformer's) temporal compression (default: the shipped one's)")
    p.add_argument("--video-patch-size", type=int, default=None,
                   help="cogvideox: the transformer's spatial patch (default 2; 4 keeps the token count of an f=4 VAE "
                        "with an f=2 one)")
    p.add_argument("--video-layers", type=int, default=None, help="cogvideox: transformer blocks (default 4)")
    p.add_argument("--video-heads", type=int, default=None,
                   help="cogvideox: attention heads of 16 channels (default 4: width 64)")
    p.add_argument("--video-size", type=int, default=VIDEO_SIZE,
                   help="video families: side of the training clips in pixels (recorded as the sampling size; the "
                        "judge reads small diamonds and triangles as circles at 32 px once they are blurred, and is "
                        "robust at 48)")
    p.add_argument("--vae-frames", type=int, default=None,
                   help="cogvideox: frames of the VAE's training clips (1 + 4k; default: the pipeline's 9). The causal "
                        "3D VAE decodes in chunks of 2 latent frames anyway, so 5-frame clips train it at about half "
                        "the cost per clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--tiny", action="store_true", help="tiny architecture (smoke tests)")
    p.add_argument("--log", default=None, help="jsonl log (default: OUT-checkpoints/log.jsonl)")
    return p.parse_args(argv)


BUILDERS = {"sd": build_sd_pipeline, "sd3": build_sd3_pipeline, "flux2": build_flux2_pipeline, "cogvideox": build_cogvideox_pipeline,
            "wan": build_wan_pipeline}


def build_pipeline(family: str, seed: int, tiny: bool, **overrides):
    return BUILDERS[family](seed=seed, **{**(TINY[family] if tiny else {}), **overrides})


def training_batches(family: str, batch_size: int, seed: int, caption_dropout: float = 0.1, layout: str = "random",
                     num_frames: int | None = None, size: int | None = None):
    """Rendered training data of ``family``: shapes scenes, or moving-shapes clips for the video families
    (``num_frames``, default :data:`VIDEO_FRAMES`, of ``size`` pixels, default :data:`VIDEO_SIZE`)."""
    if family in VIDEO_FAMILIES:
        return VideoBatches(batch_size, seed=seed, size=size or VIDEO_SIZE, num_frames=num_frames or VIDEO_FRAMES,
                            caption_dropout=caption_dropout, layout=layout)
    return ShapesBatches(batch_size, seed=seed, caption_dropout=caption_dropout, layout=layout)


def load_trained_weights(pipe, folder: str) -> list[str]:
    """Start from the denoiser and text encoder weights of the pipeline saved in ``folder``.
    Tensors whose shape differs (e.g. a transformer's patch embedding and output projection after a
    change of patch size or VAE) keep their fresh initialisation; their names are returned."""
    from diffusers import DiffusionPipeline

    source = DiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    skipped = []
    for module, trained in zip([denoiser(pipe)] + text_encoders(pipe), [denoiser(source)] + text_encoders(source)):
        own = module.state_dict()
        theirs = trained.state_dict()
        if set(own) != set(theirs):
            raise ValueError(f"--init-from {folder}: {type(module).__name__} has other parameter names "
                             f"({sorted(set(own) ^ set(theirs))[:3]}...)")
        keep = {k: v for k, v in theirs.items() if v.shape == own[k].shape}
        skipped += [k for k in own if k not in keep]
        module.load_state_dict({**own, **keep})
    return skipped


def prepare_vae(pipe, args, log) -> None:
    """Train the pipeline's VAE (or copy a trained one) and normalise its latents."""
    probe, _ = training_batches(args.family, 64 if args.family in VIDEO_FAMILIES else 256, args.seed + 7919, 0.0,
                                size=args.video_size)(0)
    if args.vae_from:
        if args.family == "flux2":  # the shapes AutoencoderKL's weights in FLUX.2's AutoencoderKLFlux2
            from diffusers import AutoencoderKL

            copy_autoencoder_kl(AutoencoderKL.from_pretrained(args.vae_from, subfolder="vae", torch_dtype=torch.float32),
                                pipe.vae)
        else:
            trained = type(pipe.vae).from_pretrained(args.vae_from, subfolder="vae", torch_dtype=torch.float32)
            pipe.vae.load_state_dict(trained.state_dict())
        pipe.vae.eval().requires_grad_(False)
        if args.vae_decoder_steps:
            train_vae(pipe.vae, training_batches(args.family, args.vae_batch_size, args.seed + 2, 0.0,
                                                 num_frames=args.vae_frames, size=args.video_size),
                      args.vae_decoder_steps, lr=args.vae_lr, log=log, decoder_only=True)
    else:
        train_vae(pipe.vae, training_batches(args.family, args.vae_batch_size, args.seed + 1, 0.0, num_frames=args.vae_frames,
                                             size=args.video_size),
                  args.vae_steps, lr=args.vae_lr, log=log)
    if args.family == "flux2":
        normalise_flux2_latents(pipe.vae, probe)
        stats = {"bn_mean": pipe.vae.bn.running_mean.tolist(), "bn_var": pipe.vae.bn.running_var.tolist()}
    elif args.family == "wan":
        normalise_channel_latents(pipe.vae, probe)
        stats = {"latents_mean": pipe.vae.config.latents_mean, "latents_std": pipe.vae.config.latents_std}
    else:
        normalise_latents(pipe.vae, probe, centred=args.family == "sd3")
        stats = {"scaling_factor": pipe.vae.config.scaling_factor, "shift_factor": pipe.vae.config.shift_factor}
    log({"stage": "vae", "recon_mse": reconstruction_error(pipe.vae, probe[:64]), **stats})


def sampling_settings(args) -> dict:
    """The sampling settings recorded next to the weights (read by ``sampling_defaults``)."""
    size = args.video_size if args.family in VIDEO_FAMILIES else IMAGE_SIZE
    frames = {"num_frames": VIDEO_FRAMES} if args.family in VIDEO_FAMILIES else {}
    tokens = {"max_sequence_length": FLUX2_TEXT_TOKENS} if args.family == "flux2" else {}
    if args.family in VIDEO_FAMILIES and min(t5_token_choices(args)) < PIPELINE_TEXT_TOKENS[args.family]:
        tokens = {"max_sequence_length": min(t5_token_choices(args))}
    return {"num_inference_steps": args.sample_steps, "guidance_scale": args.sample_guidance,
            "height": size, "width": size, **frames, **tokens}


COGVIDEOX_TEXT_TOKENS = 226
"""``CogVideoXPipeline``'s default ``max_sequence_length``."""
PIPELINE_TEXT_TOKENS = {"cogvideox": COGVIDEOX_TEXT_TOKENS, "wan": 512}
"""The video pipelines' default ``max_sequence_length`` (``WanPipeline``: 512)."""


def t5_token_choices(args) -> list[int]:
    """``--t5-tokens`` as a list, with the family's default."""
    if args.t5_tokens:
        return _ints(args.t5_tokens)
    if args.family in VIDEO_FAMILIES:
        return [PIPELINE_TEXT_TOKENS[args.family]]
    return [16] * 7 + [256]


def loss_for(family: str, t5_tokens: list[int], snr_gamma: float | None = None, object_weight: float = 0.0):
    if family == "sd":
        return functools.partial(sd_denoising_loss, snr_gamma=snr_gamma)
    choices = random.Random(0)
    if family == "cogvideox":
        adapters = {}  # one adapter per pipeline (it caches the rotary tables)

        def video_loss(pipe, latents, captions, generator):
            from diffalign.pipelines.cogvideox import CogVideoXAdapter

            adapter = adapters.setdefault(id(pipe), CogVideoXAdapter(pipe))
            adapter.max_sequence_length = choices.choice(t5_tokens)
            return cogvideox_loss(pipe, latents, captions, generator, adapter=adapter, object_weight=object_weight)

        return video_loss
    if family == "wan":
        adapters = {}

        def wan_loss(pipe, latents, captions, generator):
            from diffalign.pipelines.wan import WanAdapter

            adapter = adapters.setdefault(id(pipe), WanAdapter(pipe))
            adapter.max_sequence_length = choices.choice(t5_tokens)
            return wan_flow_loss(pipe, latents, captions, generator, adapter=adapter, object_weight=object_weight)

        return wan_loss
    if family == "flux2":
        return functools.partial(flux2_flow_loss, tokens=FLUX2_TEXT_TOKENS)

    def loss(pipe, latents, captions, generator):
        return sd3_flow_loss(pipe, latents, captions, generator, t5_tokens=choices.choice(t5_tokens))

    return loss


def main(argv=None) -> str:
    args = parse_args(argv)
    if args.object_weight and args.family not in VIDEO_FAMILIES:
        raise SystemExit(f"--object-weight is for the video families {VIDEO_FAMILIES}, not {args.family}")
    if args.object_weight < 0:
        raise SystemExit(f"--object-weight must be >= 0, got {args.object_weight}")
    diffusers_logging.set_verbosity_error()  # fp16 casting notices on every checkpoint
    diffusers_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    ckpt_dir = args.checkpoint_dir or args.out.rstrip("/") + "-checkpoints"
    log = JsonlLog(args.log or os.path.join(ckpt_dir, "log.jsonl"))
    start = time.time()
    overrides = {"prediction_type": args.prediction_type} if args.family == "sd" else {}
    if args.family == "cogvideox" and args.video_vae_channels:
        overrides["vae_channels"] = tuple(_ints(args.video_vae_channels))
    if args.family in VIDEO_FAMILIES and args.video_patch_size:
        overrides["patch_size"] = args.video_patch_size
    if args.family in VIDEO_FAMILIES and args.video_layers:
        overrides["layers"] = args.video_layers
    if args.family in VIDEO_FAMILIES and args.video_heads:
        overrides["heads"] = args.video_heads
    if args.family == "cogvideox":
        overrides["size"] = args.video_size
    if args.family == "cogvideox" and args.video_temporal_compression:
        overrides["temporal_compression"] = args.video_temporal_compression
    pipe = build_pipeline(args.family, args.seed, args.tiny, **overrides)
    if args.init_from:
        skipped = load_trained_weights(pipe, args.init_from)
        log({"stage": "init", "from": args.init_from, "fresh": skipped})
    log({"stage": "build", "family": args.family, "args": vars(args),
         "params": {"denoiser": count_parameters(denoiser(pipe)), "vae": count_parameters(pipe.vae),
                    "text_encoders": [count_parameters(m) for m in text_encoders(pipe)]}})
    prepare_vae(pipe, args, log)
    config = LoopConfig(steps=args.steps, lr=args.lr, warmup_steps=args.warmup_steps, ema_decay=args.ema_decay,
                        train_text_encoder=not args.freeze_text_encoder, checkpoint_every=args.checkpoint_every,
                        max_minutes=args.max_minutes, seed=args.seed, extra_json={SAMPLING_FILE: sampling_settings(args)})
    if args.latent_pool:
        source = (VideoBatches(64, seed=args.seed + 104729, size=args.video_size, num_frames=VIDEO_FRAMES, caption_dropout=0.0,
                               layout=args.layout)
                  if args.family in VIDEO_FAMILIES else None)
        batches = LatentPool(pipe.vae, args.latent_pool, args.batch_size, seed=args.seed, log=log, layout=args.layout,
                             source=source)
    else:
        batches = training_batches(args.family, args.batch_size, args.seed, layout=args.layout, size=args.video_size)
    ema, modules = train_denoiser(pipe, batches, loss_for(args.family, t5_token_choices(args), args.snr_gamma, args.object_weight), config, ckpt_dir, log)
    save_fp16(pipe, args.out, ema, modules, config.extra_json)
    log({"stage": "done", "out": args.out, "wall_s": round(time.time() - start, 1)})
    return args.out


if __name__ == "__main__":
    main()
