"""Assemble a shipped shapes pipeline from a training checkpoint.

    python -m diffalign.shapes.pretraining.assemble CHECKPOINT --out DIR [--decoder-from PIPELINE]
        [--steps 20 --guidance 5]

Copies the checkpoint (a diffusers folder) as fp16 safetensors with its sampling settings, taking
the VAE decoder from ``--decoder-from`` when given: a decoder fine-tuned with the encoder fixed
(``pretrain --vae-from X --vae-decoder-steps N``) decodes the same latent space more sharply, so it
can be trained alongside the denoiser and swapped in afterwards.
"""
from __future__ import annotations

import argparse

import torch

from diffalign.shapes.pretraining.autoencoder import copy_decoder
from diffalign.shapes.pretraining.components import IMAGE_SIZE
from diffalign.shapes.pretraining.loop import save_fp16
from diffalign.shapes.sampling import SAMPLING_FILE, read_sampling_file


def assemble(checkpoint: str, out: str, decoder_from: str | None = None, steps: int = 20, guidance: float = 5.0) -> str:
    """Write ``checkpoint`` (optionally with ``decoder_from``'s VAE decoder) to ``out`` in fp16."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(checkpoint, torch_dtype=torch.float32)
    if decoder_from:
        copy_decoder(type(pipe.vae).from_pretrained(decoder_from, subfolder="vae", torch_dtype=torch.float32), pipe.vae)
    # the checkpoint's recorded size (and a video pipeline's num_frames) stay; steps and guidance are set here
    settings = {"height": IMAGE_SIZE, "width": IMAGE_SIZE, **read_sampling_file(checkpoint),
                "num_inference_steps": steps, "guidance_scale": guidance}
    return save_fp16(pipe, out, extra_json={SAMPLING_FILE: settings})


def main(argv=None) -> str:
    p = argparse.ArgumentParser(prog="python -m diffalign.shapes.pretraining.assemble", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--decoder-from", default=None)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    args = p.parse_args(argv)
    return assemble(args.checkpoint, args.out, args.decoder_from, args.steps, args.guidance)


if __name__ == "__main__":
    print(main())
