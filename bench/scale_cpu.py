"""Weak scaling of the offline (Diffusion-DPO) trainer on CPU: 1 process vs W gloo processes
(``torchrun``), the same per-process batch, samples (pairs) per second from the trainer's own
per-step log.

  python bench/scale_cpu.py --processes 2 --batch-size 4 --steps 12 --resolution 32

Each process gets ``--threads`` threads (default 1). Prints one JSON line; record it with the
command and the machine (say when it was shared) in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run(root: str, name: str, processes: int, args) -> dict:
    recipe = os.path.join(root, f"{name}.yaml")
    with open(recipe, "w") as f:
        f.write(
            f"method: diffusion_dpo\noutput_dir: {os.path.join(root, name)}\nmax_steps: {args.steps}\n"
            f"batch_size: {args.batch_size}\nprogress_bar: false\nseed: 0\nnum_threads: {args.threads}\n"
            f"model:\n  pretrained: {os.path.join(root, 'model')}\nlora:\n  rank: 8\n"
            f"data:\n  path: {os.path.join(root, 'pairs')}\n  resolution: {args.resolution}\n"
            f"cache:\n  dir: {os.path.join(root, 'cache')}\n"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WORLD_SIZE", "RANK", "MASTER_"))}
    env.update(OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    subprocess.run([*launcher, "-m", "diffalign", "train", recipe], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from diffalign.train.metrics import read_metrics

    rows = [r for r in read_metrics(os.path.join(root, name, "logs", "metrics.jsonl")) if "step_time" in r]
    with open(os.path.join(root, name, "train_summary.json")) as f:
        world = json.load(f)["num_processes"]
    step = statistics.median(r["step_time"] for r in rows[args.warmup:])
    pairs = args.batch_size * processes
    return {"processes": world, "pairs_per_step": pairs, "s_per_step": round(step, 4), "pairs_per_s": round(pairs / step, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4, help="pairs per step and process")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the timing")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    args = p.parse_args(argv)

    import numpy as np

    from diffalign.data import write_pairs_jsonl
    from diffalign.pipelines.tiny import build_tiny_pipeline

    with tempfile.TemporaryDirectory() as root:
        rng = np.random.default_rng(0)
        n = args.batch_size * args.processes * 4
        r = args.resolution
        pairs = [{"caption": f"a photo of thing {i}", "jpg_0": rng.integers(0, 255, (r, r, 3), dtype=np.uint8),
                  "jpg_1": rng.integers(0, 255, (r, r, 3), dtype=np.uint8), "label_0": float(i % 2)} for i in range(n)]
        write_pairs_jsonl(os.path.join(root, "pairs"), pairs)
        build_tiny_pipeline("sd").save_pretrained(os.path.join(root, "model"))
        one = run(root, "one", 1, args)
        many = run(root, "many", args.processes, args)
    print(json.dumps({"one": one, "many": many, "speedup": round(many["pairs_per_s"] / one["pairs_per_s"], 2),
                      "efficiency": round(many["pairs_per_s"] / one["pairs_per_s"] / args.processes, 2),
                      "cpus": os.cpu_count(), "args": vars(args)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
