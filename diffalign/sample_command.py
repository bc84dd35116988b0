"""``diffalign sample``: generate images from a pipeline (+ LoRA) for a prompt file.

    diffalign sample --pipeline PATH_OR_ID [--lora PATH] --prompts FILE --out DIR [--images-per-prompt 1]

``--prompts`` is a ``.txt`` (one prompt per line), ``.json`` or ``.jsonl`` file; ``--prompt TEXT``
(repeatable) gives prompts inline. Image ``k`` of every prompt starts from the noise of ``seed + k``.
Writes ``DIR/<prompt:05d>_<k:02d>.png``, ``DIR/samples.jsonl`` (file, prompt, seed per image) and
``DIR/grid.png`` (the first 64 images). A video pipeline (one that takes ``num_frames``, e.g.
CogVideoX) writes ``DIR/<prompt:05d>_<k:02d>.mp4`` (GIF without ffmpeg) and a grid of frame strips;
``--num-frames`` and ``--fps`` set the clip length and playback rate.
"""
from __future__ import annotations

import argparse
import json
import os

from diffalign.utils.dtypes import dtype_argument

GRID_IMAGES = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", required=True, help="diffusers pipeline folder, hub id, or shapes-sd / shapes-sd3 / shapes-flux2")
    p.add_argument("--lora", help="LoRA folder or .safetensors file loaded into the pipeline")
    p.add_argument("--revision", help="hub revision of --pipeline (branch, tag or commit), as from_pretrained(revision=...)")
    p.add_argument("--prompts", help=".txt / .json / .jsonl prompt file")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--images-per-prompt", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="sampling steps (default: the pipeline's shipped setting or diffusers')")
    p.add_argument("--guidance", type=float)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--num-frames", type=int, help="frames per clip (video pipelines)")
    p.add_argument("--fps", type=int, default=8, help="playback rate of written videos")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device")
    p.add_argument("--dtype", type=dtype_argument, help="pipeline dtype: fp16/float16, bf16/bfloat16, fp32/float32 (default: as saved)")


def run(args: argparse.Namespace) -> int:
    from diffalign.pipelines.generation import (
        PipelineSpec,
        generate,
        is_video_pipeline,
        load_pipeline_spec,
        sampling_settings,
    )
    from diffalign.eval.prompts import read_prompt_file
    from diffalign.utils.images import make_grid

    prompts = [r["prompt"] for r in read_prompt_file(args.prompts)] if args.prompts else []
    prompts += args.prompt
    if not prompts:
        raise SystemExit("give --prompts FILE or --prompt TEXT")
    spec = PipelineSpec(args.pipeline, args.lora, args.revision)
    sampling = sampling_settings(spec.pipeline, None, num_inference_steps=args.steps, guidance_scale=args.guidance,
                                 height=args.height, width=args.width)
    pipe = load_pipeline_spec(spec, device=args.device, dtype=args.dtype)
    video = is_video_pipeline(pipe)
    if video and args.num_frames:
        sampling["num_frames"] = args.num_frames
    os.makedirs(args.out, exist_ok=True)
    records = []

    def save(done):
        for i, k, image in done:
            if video:
                from diffalign.utils.video import write_video

                name = os.path.basename(write_video(os.path.join(args.out, f"{i:05d}_{k:02d}.mp4"), image, fps=args.fps))
            else:
                name = f"{i:05d}_{k:02d}.png"
                image.save(os.path.join(args.out, name))
            records.append({"file": name, "prompt": prompts[i], "prompt_index": i, "image_index": k, "seed": args.seed + k})

    images = generate(pipe, prompts, images_per_prompt=args.images_per_prompt, seed=args.seed,
                      batch_size=args.batch_size, on_batch=save, video=video, **sampling)
    if video:
        from PIL import Image

        from diffalign.utils.video import frame_strip

        images = [[Image.fromarray(frame_strip(clip)) for clip in per_prompt] for per_prompt in images]
    records.sort(key=lambda r: (r["prompt_index"], r["image_index"]))
    with open(os.path.join(args.out, "samples.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({**r, "pipeline": spec.label, **sampling}) + "\n")
    flat = [(im, prompts[i]) for i, per_prompt in enumerate(images) for im in per_prompt]
    shown = flat[:GRID_IMAGES]
    if len({im.size for im, _ in shown}) == 1:
        scale = max(1, 256 // max(shown[0][0].size))
        make_grid([im for im, _ in shown], captions=[p for _, p in shown], ncols=min(8, len(shown)),
                  scale=scale).save(os.path.join(args.out, "grid.png"))
    print(f"wrote {len(flat)} {'videos' if video else 'images'} of {spec.label} to {args.out}")
    return 0
