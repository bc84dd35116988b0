"""Time the Diffusion-DPO training step of diffalign's offline trainer (pairs/s, peak memory).

Runs the real product path (``OfflinePreferenceTrainer`` with cached latents and text) on random
pairs and reports the steady-state step time from the trainer's own per-step log.

  # tiny models on CPU
  python bench/dpo_step.py --model tiny-sd --resolution 32 --batch-size 8 --steps 20
  # SD1.5-size random weights (../shared/bench/make_fake.py OUT sd15) on a GPU
  python bench/dpo_step.py --model /tmp/fake/sd15 --resolution 512 --batch-size 16 --steps 20 \
      --mixed-precision bf16 --gradient-checkpointing

Prints one JSON line with the figures; record them with the command and machine in
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-sd", help="a diffusers folder, a hub id, or tiny-<family>")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the timing")
    p.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--weight-dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--checkpoint-blocks", default="auto",
                   help="model.checkpoint_blocks: auto (the default), none, or a comma list such as down_blocks.0,up_blocks.3")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--attention", default="sdpa")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    import diffalign  # noqa: F401
    from diffalign.data import DataConfig, write_pairs_jsonl
    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.checkpointing import checkpoint_blocks_value
    from diffalign.pipelines.tiny import build_tiny_pipeline
    from diffalign.train.metrics import read_metrics
    from diffalign.train.offline import CacheConfig, OfflineConfig, OfflinePreferenceTrainer

    work = tempfile.mkdtemp(prefix="bench-dpo-")
    rng = np.random.default_rng(0)
    n_pairs = args.batch_size * 4
    write_pairs_jsonl(os.path.join(work, "pairs"), [
        {"caption": f"a random test prompt number {i}",
         "jpg_0": rng.integers(0, 255, (args.resolution, args.resolution, 3), dtype=np.uint8),
         "jpg_1": rng.integers(0, 255, (args.resolution, args.resolution, 3), dtype=np.uint8), "label_0": 1.0}
        for i in range(n_pairs)
    ])
    cfg = OfflineConfig(
        output_dir=os.path.join(work, "out"), method="diffusion_dpo", max_steps=args.steps + args.warmup,
        batch_size=args.batch_size, mixed_precision=args.mixed_precision, progress_bar=False,
        num_threads=args.threads, data=DataConfig(path=os.path.join(work, "pairs"), resolution=args.resolution),
        cache=CacheConfig(dir=os.path.join(work, "cache")),
    )
    cfg.model.weight_dtype = args.weight_dtype
    cfg.model.gradient_checkpointing = args.gradient_checkpointing
    blocks = args.checkpoint_blocks
    cfg.model.checkpoint_blocks = checkpoint_blocks_value(blocks if blocks in ("auto", "none") else blocks.split(","))
    cfg.model.attention = args.attention
    cfg.lora.rank = args.lora_rank
    adapter = None
    if args.model.startswith("tiny-"):
        family = args.model.removeprefix("tiny-")
        adapter = adapter_for(build_tiny_pipeline(family))
    else:
        cfg.model.pretrained = args.model
    trainer = OfflinePreferenceTrainer(cfg, adapter=adapter)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train()
    times = [r["step_time"] for r in read_metrics(result.metrics_path)][args.warmup:]
    step = statistics.median(times)
    figures = {
        "model": args.model, "resolution": args.resolution, "pairs_per_step": args.batch_size,
        "mixed_precision": args.mixed_precision, "weight_dtype": args.weight_dtype,
        "gradient_checkpointing": args.gradient_checkpointing, "checkpoint_blocks": args.checkpoint_blocks,
        "lora_rank": args.lora_rank,
        "s_per_step_median": round(step, 4), "pairs_per_s": round(args.batch_size / step, 2),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()} ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        figures["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    else:
        figures["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
