"""Peak GPU memory and step time of the CogVideoX video recipes on the real CogVideoX-2b / -5b
architectures (random weights, built in memory: no download), through the product trainers: DenseDPO
on 2b and 5b, and the online DDPO and VADER-style (reward-gradient) recipes on 2b.

What one run does, per model: build a ``CogVideoXPipeline`` whose transformer and 3D VAE have the
published configs (2b: 30 blocks x 30 heads, sincos positions; 5b: 42 blocks x 48 heads, 3D rotary
positions; VAE: ``AutoencoderKLCogVideoX()``'s defaults) in bf16 on the GPU, with a two-layer T5 of
T5-XXL's width 4096 in place of the 4.7 B-parameter encoder (the recipes cache the text embeddings
before training, so the encoder's size never reaches the measured steps); then run
``OfflinePreferenceTrainer`` with the recipe's settings (``dense_dpo``, ``video_pairs`` at
``--size`` and ``--frames``, batch 1, LoRA r128, bf16, gradient checkpointing, VAE tiling and
slicing, latent cache) on random clip pairs with segment labels. The latent cache is built first
(its VAE encode is reported apart as ``cache_build_s`` and ``cache_peak_gb``); the figure is
``torch.cuda.max_memory_allocated`` over the ``--steps`` optimizer steps after ``--warmup``
(reset after warm-up), and seconds per step between optimizer steps.

The online recipes (``--online``, default both): ``cogvideox2b_ddpo_video`` (rollouts with CFG at the
recipe's sampling batch, VAE tiled decode, the video-of-frames HPSv2.1 reward, PPO steps of one rollout)
and ``cogvideox2b_vader_hps`` (a rollout whose last step keeps its graph, the VAE decode with gradient
checkpointing, HPSv2.1 on 3 frames, the backward through all of it). HPSv2.1 is a random-weight
open_clip ViT-H-14 (its published architecture, written once to a temporary file and read back the way
the reward reads the released checkpoint). One iteration each, at ``--online-steps`` denoising steps
instead of the recipe's 20 / 25: the memory of one step does not depend on how many there are, and DDPO
trains the recipe's half of them. The figure is ``max_memory_allocated`` over the whole iteration
(sampling, reward and training), with its wall time.

  python bench/gpu_video_memory.py                          # both models at 49 x 480 x 720 (GPU), then the online recipes
  python bench/gpu_video_memory.py --models "" --online ddpo,vader   # only the online recipes
  python bench/gpu_video_memory.py --models cogvideox-5b --size 480x720 --frames 49 --json out.json
  python bench/gpu_video_memory.py --dry-run                # the plan, on any machine
  python bench/gpu_video_memory.py --smoke                  # the tiny CogVideoX on CPU: checks the code path

Sized for one H100 (80 GB) in about 5 minutes for both models, plus about 2 for the online recipes. The figures it prints go to
docs/video.md ("Real-weight recipes") and docs/benchmarks.md with the card's name.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

#: The published transformer configs (everything else is ``CogVideoXTransformer3DModel``'s default).
TRANSFORMERS = {
    "cogvideox-2b": dict(num_attention_heads=30, num_layers=30, use_rotary_positional_embeddings=False),
    "cogvideox-5b": dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True),
}
RECIPE = {"cogvideox-2b": "cogvideox2b_dense_dpo", "cogvideox-5b": "cogvideox5b_dense_dpo"}
#: ``--online`` name -> the online recipe it runs (on CogVideoX-2b, the recipes' model).
ONLINE = {"ddpo": "cogvideox2b_ddpo_video", "vader": "cogvideox2b_vader_hps"}
#: the reward's image model in ``--smoke`` runs: a tiny open_clip CLIP in place of ViT-H-14.
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
#: ``--smoke``: fp32, a small LoRA, and no VAE tiling (the tiny VAE's tile sizes do not fit 16x24 clips; the switch
#: itself is tested in tests/test_pipeline_cogvideox.py).
SMOKE_OVERRIDES = ["mixed_precision=no", "model.weight_dtype=fp32", "lora.rank=4", "lora.alpha=4", "model.vae_tiling=false"]
PROMPTS = ["a red fox running through fresh snow", "waves breaking on a rocky shore at sunset",
           "a chef tossing vegetables in a wok", "a hot air balloon rising over green hills"]
VAE_SCALING = {"cogvideox-2b": 1.15258426, "cogvideox-5b": 0.7}


def build_pipeline(model: str, smoke: bool, device, dtype):
    """A random-weight ``CogVideoXPipeline`` of ``model``'s architecture (``smoke``: the tiny one)."""
    import torch

    from diffalign.pipelines.tiny import build_tiny_pipeline

    if smoke:
        return build_tiny_pipeline("cogvideox").to(device, dtype)
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    from diffalign.pipelines.tiny.cogvideox import COGVIDEOX_SCHEDULER_CONFIG
    from diffalign.pipelines.tiny.t5 import tiny_t5

    tokenizer, text_encoder = tiny_t5(0, d_model=4096, model_max_length=226)
    torch.manual_seed(0)
    with torch.device(device):
        transformer = CogVideoXTransformer3DModel(**TRANSFORMERS[model]).to(dtype)
        vae = AutoencoderKLCogVideoX(scaling_factor=VAE_SCALING[model]).to(dtype)
    scheduler = CogVideoXDDIMScheduler.from_config(
        {**COGVIDEOX_SCHEDULER_CONFIG, "snr_shift_scale": 3.0 if model == "cogvideox-2b" else 1.0})
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder.to(device, dtype), vae=vae,
                             transformer=transformer, scheduler=scheduler)
    return pipe


def random_pairs(count: int, frames: int, height: int, width: int) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(0)
    return [{"caption": f"a video of object {i} moving across a table", "segment_labels": [1, -1, 0],
             "video_0": rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8),
             "video_1": rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8)} for i in range(count)]


def run_model(model: str, a, device, dtype, work: str) -> dict:
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from diffalign.config import load_config
    from diffalign.pipelines import adapter_for
    from diffalign.train.offline import OfflineConfig, OfflinePreferenceTrainer
    from diffalign.train_command import recipe_path

    cuda = device.type == "cuda"
    height, width = a.size
    cfg = load_config(OfflineConfig, recipe_path(RECIPE[model]), [
        f"output_dir={os.path.join(work, 'out')}", f"cache.dir={os.path.join(work, 'cache')}",
        f"max_steps={a.warmup + a.steps}", "gradient_accumulation_steps=1", "checkpointing_steps=0",
        "progress_bar=false", "overwrite=true", f"data.resolution=[{height},{width}]", f"data.num_frames={a.frames}",
        *(SMOKE_OVERRIDES if a.smoke else [])])
    pipe = build_pipeline(model, a.smoke, device, dtype)
    times: list[float] = []
    state = {"count": 0, "t0": None}

    def on_step(*_args) -> None:
        if cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        state["count"] += 1
        if state["count"] > a.warmup:
            times.append(now - state["t0"])
        elif state["count"] == a.warmup and cuda:
            torch.cuda.reset_peak_memory_stats()
        state["t0"] = time.perf_counter()

    t = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    # construction runs the set-up phase: the latent cache (VAE encode of every clip, T5 embeddings)
    trainer = OfflinePreferenceTrainer(cfg, adapter=adapter_for(pipe),
                                       dataset=random_pairs(a.warmup + a.steps, a.frames, height, width))
    cache_s = time.perf_counter() - t
    cache_peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
    handle = register_optimizer_step_post_hook(on_step)
    try:
        state["t0"] = time.perf_counter()
        trainer.train()
    finally:
        handle.remove()
    return {"model": model, "recipe": RECIPE[model], "device": torch.cuda.get_device_name() if cuda else "cpu",
            "frames": a.frames, "height": height, "width": width,
            "transformer_params_m": round(sum(p.numel() for p in pipe.transformer.parameters()) / 1e6, 1),
            "lora_params_m": round(sum(p.numel() for p in trainer.adapter.denoiser.parameters() if p.requires_grad) / 1e6, 3),
            "s_per_step": round(sum(times) / len(times), 3) if times else None,
            "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None,
            "cache_build_s": round(cache_s, 1), "cache_peak_gb": round(cache_peak, 2) if cache_peak is not None else None}


def hps_reward(work: str, smoke: bool, dtype):
    """The recipes' reward, ``video`` over HPSv2.1 with the recipe's frame options set by the trainer's config:
    a random-weight open_clip model of HPSv2.1's architecture (``smoke``: a tiny one) saved as the released file
    is, then loaded by the product's reward class."""
    import torch
    from safetensors.torch import save_file

    from diffalign.rewards.hps import build_open_clip

    torch.manual_seed(0)
    model = build_open_clip(TINY_CLIP if smoke else None)
    path = os.path.join(work, "hps.safetensors")
    save_file({k: v.to(dtype).contiguous() for k, v in model.state_dict().items()}, path)
    del model
    return {"path": path, "model_config": TINY_CLIP if smoke else None, "dtype": "fp32" if smoke else "bf16"}


def run_online(name: str, a, device, dtype, work: str) -> dict:
    """One iteration of the online recipe ``ONLINE[name]`` on random-weight CogVideoX-2b (the tiny one with
    ``smoke``) at ``--online-steps`` denoising steps; peak memory over the iteration and its wall time."""
    import torch

    from diffalign.config import load_config
    from diffalign.pipelines import adapter_for
    from diffalign.train_command import recipe_path, trainer_class

    cuda = device.type == "cuda"
    height, width = a.size
    recipe = recipe_path(ONLINE[name])
    prompts = os.path.join(work, "prompts.txt")
    with open(prompts, "w", encoding="utf-8") as f:
        f.write("\n".join(PROMPTS) + "\n")
    inner = hps_reward(work, a.smoke, dtype)
    overrides = [
        f"output_dir={os.path.join(work, 'out')}", "max_steps=1", "checkpointing_steps=0", "progress_bar=false",
        "overwrite=true", f"prompts.path={prompts}", f"sampling.height={height}", f"sampling.width={width}",
        f"sampling.num_frames={a.frames}", f"sampling.num_inference_steps={a.online_steps}",
        f"reward.options.reward_options.path={inner['path']}", f"reward.options.reward_options.dtype={inner['dtype']}",
        "evaluation.every_steps=0",
        *([f"reward.options.reward_options.model_config={json.dumps(inner['model_config'])}"] if a.smoke else []),
        *(SMOKE_OVERRIDES if a.smoke else []),
    ]
    if name == "ddpo":  # one rollout per optimizer step, as the recipe; one sampling batch of the recipe's size
        overrides += ["sampling.num_batches=1", "gradient_accumulation_steps=2", "sample_grid_every=0"]
    else:
        overrides += ["gradient_accumulation_steps=1"]
    cls = trainer_class(recipe, overrides)
    cfg = load_config(cls.config_class, recipe, overrides)
    pipe = build_pipeline("cogvideox-2b", a.smoke, device, dtype)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = cls(cfg, adapter=adapter_for(pipe))
    t = time.perf_counter()
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    return {"model": "cogvideox-2b", "recipe": ONLINE[name], "device": torch.cuda.get_device_name() if cuda else "cpu",
            "frames": a.frames, "height": height, "width": width, "denoising_steps": a.online_steps,
            "sampling_batch": cfg.sampling.batch_size,
            "reward": f"{trainer.reward.label}({trainer.reward.image_reward.label}, frames={trainer.reward.frames}, "
                      f"num_frames={trainer.reward.num_frames})",
            "lora_params_m": round(sum(p.numel() for p in trainer.adapter.denoiser.parameters() if p.requires_grad) / 1e6, 3),
            "s_per_iteration": round(seconds, 1),
            "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None}


def parse_size(text: str) -> tuple[int, int]:
    from diffalign.data.transforms import resolution_value

    value = resolution_value(text)
    return (value, value) if isinstance(value, int) else value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(TRANSFORMERS), help="DenseDPO on these models ('' for none)")
    p.add_argument("--online", default=",".join(ONLINE), help=f"online recipes on CogVideoX-2b: {', '.join(ONLINE)} "
                   "('' for none)")
    p.add_argument("--online-steps", type=int, default=6, help="denoising steps of the online recipes' rollouts")
    p.add_argument("--size", default="480x720", help="height x width of the clips (CogVideoX's 480x720)")
    p.add_argument("--frames", type=int, default=49)
    p.add_argument("--steps", type=int, default=2, help="measured optimizer steps (one pair each)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (any machine)")
    p.add_argument("--smoke", action="store_true", help="the tiny CogVideoX, fp32, 9 frames of 16x24 on CPU")
    a = p.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    bad = [m for m in models if m not in TRANSFORMERS]
    if bad:
        p.error(f"unknown models {bad}: choose from {', '.join(TRANSFORMERS)}")
    online = [m for m in a.online.split(",") if m]
    bad = [m for m in online if m not in ONLINE]
    if bad:
        p.error(f"unknown online recipes {bad}: choose from {', '.join(ONLINE)}")
    if a.smoke:
        a.size, a.frames, a.steps, a.warmup, a.online_steps = "16x24", 9, 1, 1, 4
    a.size = parse_size(a.size)
    if a.dry_run:
        for m in models:
            print(f"{m}: recipe {RECIPE[m]}, {a.frames} frames of {a.size[0]}x{a.size[1]}, one pair a step, "
                  f"{a.warmup} warm-up + {a.steps} measured steps, bf16, LoRA r128, gradient checkpointing")
        for m in online:
            print(f"cogvideox-2b: recipe {ONLINE[m]}, {a.frames} frames of {a.size[0]}x{a.size[1]}, one iteration of "
                  f"{a.online_steps}-step rollouts, random-weight HPSv2.1 (ViT-H-14) reward, bf16")
        return 0

    import torch

    import diffalign  # noqa: F401

    cuda = torch.cuda.is_available()
    if not cuda and not a.smoke:
        print("no CUDA device: run with --smoke (the tiny CogVideoX on CPU) or --dry-run", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda and not a.smoke else "cpu")
    dtype = torch.float32 if a.smoke else torch.bfloat16
    rows = []
    for model in models:
        try:
            with tempfile.TemporaryDirectory() as work:
                row = run_model(model, a, device, dtype, work)
        except torch.OutOfMemoryError:
            row = {"model": model, "error": "out of memory"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if cuda:
            torch.cuda.empty_cache()
    for name in online:
        try:
            with tempfile.TemporaryDirectory() as work:
                row = run_online(name, a, device, dtype, work)
        except torch.OutOfMemoryError:
            row = {"model": "cogvideox-2b", "recipe": ONLINE[name], "error": "out of memory"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if cuda:
            torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
