"""Peak memory of a video training step versus the number of frames, with and without gradient
checkpointing and the VAE's tiling / slicing, on the shipped shapes-cogvideox pipeline on CPU.

The step: ``DRaFTTrainer.step`` (VADER-style reward gradient, K = 1: the DDIM chain without
gradient, the last denoiser call with gradient, the clip decoded by the causal 3D VAE with gradient,
``temporal_consistency`` on every frame, backward, optimizer step), LoRA rank 4 on the transformer.
That step holds the largest graph of the video trainers (the decoder's activations over every frame);
``--step ddpo`` measures instead ``DDPOTrainer.train_on`` on one collected batch (per-timestep
backward through the transformer, no decode).

Variants (``--variants``, comma-separated):

- ``plain``: nothing on;
- ``gc``: ``model.gradient_checkpointing`` (the transformer's blocks) and ``checkpoint_steps``;
- ``gc+tiling``: ``gc`` plus ``model.vae_tiling`` and ``model.vae_slicing`` (diffusers' switches;
  the tiles are set to half the clip's side, ``--tile``, since this VAE's default tiles of 240 x 360
  px would never split a small clip);
- ``gc+vaegc``: ``gc`` plus the VAE's own gradient checkpointing (``model.vae_gradient_checkpointing``:
  diffusers' ``vae.enable_gradient_checkpointing()``);
- ``gc+tiling+vaegc``: all of them.

Method (as ``bench/online_memory.py``): every point runs in a fresh Python process with glibc set to
serve allocations above 64 KiB by ``mmap`` from one arena (``MALLOC_MMAP_THRESHOLD_=65536
MALLOC_ARENA_MAX=1``), so freed tensors leave the resident set at once; the process builds the trainer
(and, for ``ddpo``, collects the batch), runs one no-grad decode to build thread pools outside the
measured region, resets the kernel's peak-RSS mark (``echo 5 > /proc/self/clear_refs``) and runs the
step; the figure is ``VmHWM - VmRSS`` at the reset: the step's peak resident-memory growth
(activations, gradients, the optimizer state made on the first step). Not tracemalloc (it does not see
torch's allocations).

Usage: ``python bench/video_memory.py [--frames 5,9,17,33] [--size 64] [--batch 2] [--threads 1]
[--plot FILE.png] [--json FILE]`` prints a Markdown table (MB); with ``--json`` the points are merged
with those already in the file, and the table and figure cover them all.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

VARIANTS = ("plain", "gc", "gc+tiling", "gc+vaegc", "gc+tiling+vaegc")


def _status(key: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024  # kB -> MB
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def _reset_peak() -> float:
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
        f.write("5")
    return _status("VmRSS")


def _child(variant: str, frames: int, args) -> dict:
    import time

    import diffalign  # noqa: F401  (before transformers / torchvision)
    import torch

    torch.set_num_threads(args.threads)
    from diffalign.pipelines.models import load_model
    from diffalign.train.online import config as C

    gc = variant != "plain"
    tiling = "tiling" in variant
    common = dict(output_dir=tempfile.mkdtemp(), max_steps=1, progress_bar=False, sample_grid_every=0, seed=0)
    if args.step == "draft":
        from diffalign.train.online.reward_gradient import DRaFTTrainer as Trainer

        cfg = C.DRaFTConfig(backprop_steps=1, checkpoint_steps=gc, **common)
        cfg.reward.name = "temporal_consistency"
    else:
        from diffalign.train.online.ddpo import DDPOTrainer as Trainer

        cfg = C.DDPOConfig(batch_size=args.batch, timestep_fraction=1.0, **common)
        cfg.reward.name, cfg.reward.workers = "temporal_consistency", 0
    cfg.prompts.source, cfg.prompts.shapes_rows = "shapes_video", 20
    cfg.model.pretrained = args.model
    cfg.model.gradient_checkpointing = gc
    cfg.model.vae_tiling = cfg.model.vae_slicing = tiling
    s = cfg.sampling
    s.num_inference_steps, s.batch_size, s.guidance_scale, s.num_frames = args.steps, args.batch, 5.0, frames
    s.height = s.width = args.size
    cfg.lora.rank = 4
    adapter = load_model(cfg.model)
    if tiling:
        adapter.vae.enable_tiling(tile_sample_min_height=args.tile, tile_sample_min_width=args.tile)
    if "vaegc" in variant:
        adapter.vae.enable_gradient_checkpointing()
    trainer = Trainer(cfg, adapter=adapter)
    with torch.no_grad():  # thread pools and lazily built tables, outside the measured region
        trainer.adapter.decode_latents(trainer.initial_latents(1, torch.Generator().manual_seed(0)))
    if args.step == "ddpo":
        traj, _ = trainer.compute_advantages(trainer.collect(0), 0)
    import gc as pygc

    pygc.collect()
    base = _reset_peak()
    t0 = time.perf_counter()
    if args.step == "ddpo":
        trainer.train_on(traj, 0)
    else:
        trainer.step(0)
    seconds = time.perf_counter() - t0
    return {"variant": variant, "frames": frames, "growth_mb": _status("VmHWM") - base, "seconds": seconds,
            "latent_frames": adapter.latent_frames(frames)}


def plot(results: dict, frames: list[int], variants: list[str], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for v in variants:
        ax.plot(frames, [results[(v, f)]["growth_mb"] for f in frames], marker="o", label=v)
    ax.set_xlabel("frames per clip")
    ax.set_ylabel("peak RSS growth of the step (MB)")
    ax.set_title(title, fontsize=9)
    ax.set_xticks(frames)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="shapes-cogvideox", help="a CogVideoX pipeline (folder, hub id or shapes-cogvideox)")
    p.add_argument("--step", default="draft", choices=["draft", "ddpo"])
    p.add_argument("--frames", default="5,9,17,33", help="frame counts (CogVideoX: 1 + 4k)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--size", type=int, default=64, help="clip side in pixels")
    p.add_argument("--tile", type=int, default=32, help="VAE tile side in pixels when tiling is on")
    p.add_argument("--batch", type=int, default=2, help="clips per step (slicing decodes them one at a time)")
    p.add_argument("--steps", type=int, default=4, help="sampling steps of the chain")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plot", help="write the figure here (png)")
    p.add_argument("--json", help="write the raw points here")
    p.add_argument("--child", nargs=2, metavar=("VARIANT", "FRAMES"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]), args)))
        return 0
    frames = [int(f) for f in args.frames.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown[0]!r}; expected some of {', '.join(VARIANTS)}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}
    results = {}
    for f in frames:
        for v in variants:
            cmd = [sys.executable, __file__, "--model", args.model, "--step", args.step, "--size", str(args.size),
                   "--tile", str(args.tile), "--batch", str(args.batch), "--steps", str(args.steps),
                   "--threads", str(args.threads), "--child", v, str(f)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"point {v} / {f} frames failed:\n{done.stderr[-2000:]}")
            results[(v, f)] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[(v, f)]
            print(f"{v:16s} {f:3d} frames: {r['growth_mb']:8.1f} MB  {r['seconds']:6.1f} s", file=sys.stderr, flush=True)
    if args.json:  # merged with the points already in the file (a later run adds variants or frames)
        if os.path.exists(args.json):
            with open(args.json, encoding="utf-8") as fh:
                results = {**{(r["variant"], r["frames"]): r for r in json.load(fh)}, **results}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([results[k] for k in sorted(results)], fh, indent=1)
        frames = sorted({f for _, f in results})
        variants = [v for v in VARIANTS if all((v, f) in results for f in frames)]
    print(f"| variant | " + " | ".join(f"{f} frames" for f in frames) + " |")
    print("|---|" + "---|" * len(frames))
    for v in variants:
        print(f"| {v} | " + " | ".join(f"{results[(v, f)]['growth_mb']:.0f}" for f in frames) + " |")
    if args.plot:
        plot(results, frames, variants, args.plot,
             f"{args.step} step, {args.model}, {args.size}x{args.size}, batch {args.batch}, CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
