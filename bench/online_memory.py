"""Peak memory of the online trainers' update versus trained timesteps (policy gradient) and versus
the number of back-propagated steps K (AlignProp), on a tiny SD pipeline on CPU.

Method: every measurement runs in a fresh Python process (so no allocator state carries over),
with glibc told to serve every allocation above 64 KiB by ``mmap`` and to use one arena
(``MALLOC_MMAP_THRESHOLD_=65536 MALLOC_ARENA_MAX=1``): freed tensors then leave the resident set at
once, so resident memory follows live memory instead of the allocator's high-water mark. The
process builds the trainer, samples what the update needs, then resets the kernel's peak-RSS mark
(``echo 5 > /proc/self/clear_refs``, Linux) and runs only the measured region; the figure is
``VmHWM - VmRSS`` at the reset, i.e. the peak resident-memory growth of that region (activations,
gradients, optimizer state created on the first step). Both sides of each comparison run the same
product code:

- ``pg``: ``DDPOTrainer.train_on`` on one collected batch, training ``T`` of the chain's steps, with
  diffalign's one backward per timestep (``per-step``) versus the same losses summed into one graph
  and back-propagated once (``one-graph``, what a loop without per-step backward would hold);
- ``alignprop``: ``AlignPropTrainer.step`` with a fixed cut-off (``K`` back-propagated
  steps), each graph-keeping UNet call gradient-checkpointed (``checkpointed``) or not (``plain``).

Usage: ``python bench/online_memory.py [--latent 32] [--steps 9] [--batch 2] [--threads 2]``
prints a Markdown table (figures in MB). ``--model`` (an SD1.5 folder or hub id, e.g. the
``make_fake.py`` one) replaces the tiny model, fp32 on CPU (the resident-memory figure above) and
bf16 on a GPU, where the figure is ``torch.cuda.max_memory_allocated()`` after
``reset_peak_memory_stats()`` minus the allocation at the reset, same regions.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def _status(key: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024  # kB -> MB
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def _reset_peak(device: str) -> float:
    """Reset the peak mark; return the current usage (MB): GPU memory allocated by torch, or RSS."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
        f.write("5")
    return _status("VmRSS")


def _peak(device: str) -> float:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return _status("VmHWM")


def _child(kind: str, variant: str, size: int, args) -> dict:
    import diffalign  # noqa: F401
    import torch

    torch.set_num_threads(args.threads)
    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.tiny import build_tiny_pipeline
    from diffalign.train.online import config as C

    out = tempfile.mkdtemp()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.model:
        from diffalign.pipelines import load_adapter

        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        adapter = load_adapter(args.model, torch_dtype=dtype, device=device)
    else:
        adapter = adapter_for(build_tiny_pipeline("sd", sample_size=args.latent)).to(device)
    common = dict(output_dir=out, max_steps=1, progress_bar=False, sample_grid_every=0)
    if kind == "pg":
        from diffalign.train.online.ddpo import DDPOTrainer

        cfg = C.DDPOConfig(batch_size=args.batch, timestep_fraction=(size + 0.5) / args.steps, **common)
        trainer_cls = DDPOTrainer if variant == "per-step" else _one_graph_ddpo()
    else:
        from diffalign.train.online.reward_gradient import AlignPropTrainer

        cfg = C.AlignPropConfig(truncation="fixed", truncation_index=args.steps - size,
                                checkpoint_steps=variant == "checkpointed", **common)
        cfg.reward.name = "shapes_color"
        cfg.prompts.categories = ["colors"]
        trainer_cls = AlignPropTrainer
    cfg.sampling.num_inference_steps, cfg.sampling.batch_size, cfg.sampling.guidance_scale = args.steps, args.batch, 3.0
    cfg.sampling.height = cfg.sampling.width = args.resolution
    cfg.model.gradient_checkpointing = False
    cfg.lora.rank = 4
    if kind == "pg":
        cfg.reward.name, cfg.reward.workers = "jpeg_compressibility", 0
    trainer = trainer_cls(cfg, adapter=adapter)
    if kind == "pg":
        traj, _ = trainer.compute_advantages(trainer.collect(0), 0)
        base = _reset_peak(device)
        trainer.train_on(traj, 0)
    else:
        with torch.no_grad():  # thread pools and lazily built tables, outside the measured region
            trainer.adapter.decode_latents(trainer.initial_latents(1, torch.Generator().manual_seed(0)))
        base = _reset_peak(device)
        trainer.step(0)
    return {"kind": kind, "variant": variant, "size": size, "growth_mb": _peak(device) - base, "device": device}


def _one_graph_ddpo():
    """DDPO whose micro-batch losses over all trained timesteps share one graph (the baseline)."""
    from diffalign.train.online.ddpo import DDPOTrainer

    class OneGraphDDPO(DDPOTrainer):
        def train_on(self, traj, step):
            for mb in self.micro_batches(traj, step, 0):
                losses = [self.unit_loss(mb, j)[0] for j in range(mb.num_steps)]
                self.backward(sum(losses) / len(losses), sync=True)
            self.optimizer_step()
            return {}

    return OneGraphDDPO


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latent", type=int, default=32, help="latent side of the tiny SD model (image = 2x)")
    p.add_argument("--model", default=None, help="a diffusers SD folder or hub id instead of the tiny model")
    p.add_argument("--resolution", type=int, default=None, help="image side (default: the model's)")
    p.add_argument("--steps", type=int, default=9, help="sampling steps (> the largest K: AlignProp keeps c >= 1)")
    p.add_argument("--batch", type=int, default=2, help="rollouts per batch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="1,2,4,8", help="trained timesteps T / back-propagated steps K")
    p.add_argument("--child", nargs=3, metavar=("KIND", "VARIANT", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, variant, size = args.child
        print(json.dumps(_child(kind, variant, int(size), args)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    plan = [("pg", v, s) for v in ("per-step", "one-graph") for s in sizes]
    plan += [("alignprop", v, s) for v in ("checkpointed", "plain") for s in sizes]
    results = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}
    for kind, variant, size in plan:
        cmd = [sys.executable, __file__, "--latent", str(args.latent), "--steps", str(args.steps), "--batch",
               str(args.batch), "--threads", str(args.threads), "--child", kind, variant, str(size)]
        if args.model:
            cmd += ["--model", args.model]
        if args.resolution:
            cmd += ["--resolution", str(args.resolution)]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
        results[(kind, variant, size)] = json.loads(line)["growth_mb"]
        print(f"{kind:9s} {variant:12s} {size:2d}: {results[(kind, variant, size)]:8.1f} MB", file=sys.stderr)
    header = "| " + " | ".join(["update", "variant"] + [f"{s}" for s in sizes]) + " |"
    print(header)
    print("|" + "---|" * (len(sizes) + 2))
    for kind, variants, label in (("pg", ("per-step", "one-graph"), "DDPO, trained timesteps T ="),
                                  ("alignprop", ("checkpointed", "plain"), "AlignProp, back-propagated steps K =")):
        for v in variants:
            cells = [f"{results[(kind, v, s)]:.0f}" for s in sizes]
            print(f"| {label} | {v} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
