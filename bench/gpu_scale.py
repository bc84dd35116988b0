"""GPU check of the shipped FSDP2 / DeepSpeed accelerate configs on a random-weight SDXL-size UNet:
a few LoRA or full fine-tuning steps per config, peak GPU memory and s/step.

  python bench/gpu_scale.py                     # every config on the GPUs present (one is enough)
  python bench/gpu_scale.py --configs fsdp2_lora deepspeed_zero2 --steps 6
  python bench/gpu_scale.py --dry-run           # the accelerate launch lines only (runs on CPU)
  python bench/gpu_scale.py --table             # the computed "what fits where" table (CPU)

Each config runs as ``accelerate launch --config_file <shipped config> --num_processes N
bench/gpu_scale.py --worker ...`` (DeepSpeed configs need ``pip install deepspeed``); the worker
prints one JSON line (config, processes, trainable parameters, peak memory GiB, s/step), the
driver one summary line per config. Record the figures with the command and the GPU in
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = ("single_gpu", "fsdp2_lora", "fsdp2_full", "deepspeed_zero2", "deepspeed_zero3", "deepspeed_zero3_offload")
#: SDXL's UNet (as ../shared/bench/make_fake.py builds it).
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280],
                 attention_head_dim=[5, 10, 20], cross_attention_dim=2048, transformer_layers_per_block=[1, 2, 10],
                 use_linear_projection=True, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def build_unet(device="cpu", lora_rank: int = 0):
    import torch

    import diffalign  # noqa: F401  (its compat shim before diffusers)
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET)
    if lora_rank:
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=LORA_TARGETS))
    return unet


def worker(args) -> int:
    import torch
    from accelerate import Accelerator

    acc = Accelerator(mixed_precision="bf16")
    unet = build_unet(lora_rank=args.lora_rank)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    trainable = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-5)
    unet, opt = acc.prepare(unet, opt)
    b, res = args.batch_size, args.resolution // 8
    dev = acc.device
    times = []
    torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps):
        torch.cuda.synchronize()
        t0 = time.time()
        x = torch.randn(b, 4, res, res, device=dev)
        cond = torch.randn(b, 77, 2048, device=dev)
        added = {"text_embeds": torch.randn(b, 1280, device=dev), "time_ids": torch.randn(b, 6, device=dev)}
        t = torch.randint(0, 1000, (b,), device=dev)
        with acc.autocast():
            out = unet(x, t, encoder_hidden_states=cond, added_cond_kwargs=added).sample
        loss = torch.nn.functional.mse_loss(out.float(), x)
        acc.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.time() - t0)
    steady = times[min(2, len(times) - 1):]
    if acc.is_main_process:
        print(json.dumps({"config": args.config, "processes": acc.num_processes,
                          "trainable_M": round(sum(p.numel() for p in trainable) / 1e6, 2),
                          "peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                          "s_per_step": round(sum(steady) / len(steady), 3), "batch_per_gpu": b,
                          "resolution": args.resolution, "gpu": torch.cuda.get_device_name()}), flush=True)
    return 0


def launch_line(config: str, args) -> list[str]:
    from diffalign.train_command import list_accelerate_configs

    lora = 0 if config in ("fsdp2_full", "deepspeed_zero3", "deepspeed_zero3_offload") and not args.lora_everywhere else args.lora_rank
    line = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", dict(list_accelerate_configs())[config],
            "--num_processes", str(args.processes), os.path.abspath(__file__), "--worker", "--config", config,
            "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--resolution", str(args.resolution),
            "--lora-rank", str(lora)]
    return line + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])


# ---------------------------------------------------------------------- computed table
#: nominal parameter counts (billions) of the trained network and the frozen parts (text encoders + VAE).
MODELS = {"SDXL UNet": (None, 0.9), "SD3.5 Large": (8.1, 5.7), "FLUX.1-dev": (11.9, 4.9), "Wan2.1 14B": (14.0, 5.8)}


def sdxl_params() -> float:
    """SDXL UNet parameters (billions), counted on the meta device."""
    return sum(p.numel() for p in build_unet("meta").parameters()) / 1e9


def memory_gib(params_b: float, frozen_b: float, gpus: int, mode: str, engine: str, lora_fraction: float = 0.01) -> float:
    """Weights + gradients + AdamW states per GPU (GiB), activations excluded. Full fine-tune: fp32
    master weights, fp32 grads, 2 fp32 Adam moments (16 B/param) and a bf16 frozen reference
    (2 B/param); LoRA: bf16 frozen base (2 B/param, the reference is the base with adapters off)
    plus 16 B per LoRA parameter. Frozen text encoders / VAE in bf16 (2 B/param), not sharded."""
    p, f = params_b * 1e9, frozen_b * 1e9
    if mode == "full":
        states = {"ddp": 16 * p, "zero2": 4 * p + 12 * p / gpus, "fsdp2": 16 * p / gpus, "zero3": 16 * p / gpus}[engine]
        ref = 2 * p  # the DPO / KL reference copy (unsharded: a plain module)
        total = states + ref
    else:
        lora = lora_fraction * p
        base = 2 * p / gpus if engine in ("fsdp2", "zero3") else 2 * p
        total = base + 16 * lora
    return (total + 2 * f) / 2**30


def comm_gib(params_b: float, gpus: int, mode: str, engine: str, lora_fraction: float = 0.01) -> float:
    """Bytes each GPU sends per optimizer step (ring collectives, factor (N-1)/N), GiB: DDP / ZeRO-2
    all-reduce (or reduce-scatter + all-gather) the trainable gradients; FSDP2 / ZeRO-3 also
    all-gather the (bf16) weights of every sharded module in forward and again in backward."""
    p = params_b * 1e9
    ring = (gpus - 1) / gpus
    trainable = p if mode == "full" else lora_fraction * p
    grads = 2 * ring * 4 * trainable  # fp32 gradients, all-reduce = 2 passes
    if engine in ("ddp", "zero2"):
        return grads / 2**30
    gathers = 2 * ring * 2 * p  # bf16 weights (frozen base included) gathered twice
    return (gathers + ring * 4 * trainable) / 2**30


def table() -> str:
    """The computed table (GiB per GPU of weights + gradients + optimizer states, activations excluded;
    GiB each GPU sends per optimizer step) for 8 and 64 GPUs."""
    rows = ["| model (trained params) | trained | engine | GiB/GPU, 8 GPUs | GiB/GPU, 64 GPUs | fits an 80 GiB GPU (8 GPUs)? "
            "| GiB sent/step, 8 GPUs | 64 GPUs |", "|---|---|---|---|---|---|---|---|"]
    models = dict(MODELS, **{"SDXL UNet": (round(sdxl_params(), 2), MODELS["SDXL UNet"][1])})
    for name, (p, f) in models.items():
        for mode in ("lora", "full"):
            for engine in ("ddp", "zero2", "fsdp2", "zero3"):
                if mode == "lora" and engine == "zero2":
                    continue  # the same as DDP for a LoRA (its states are tiny)
                m8, m64 = (memory_gib(p, f, n, mode, engine) for n in (8, 64))
                fits = "yes" if m8 <= 60 else "tight" if m8 <= 80 else "no"
                rows.append(f"| {name} ({p}B) | {mode} | {engine} | {m8:.1f} | {m64:.1f} | {fits} | "
                            f"{comm_gib(p, 8, mode, engine):.2f} | {comm_gib(p, 64, mode, engine):.2f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=1, help="per GPU")
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--lora-rank", type=int, default=64)
    p.add_argument("--lora-everywhere", action="store_true", help="LoRA under the full-fine-tune configs too")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the launch lines and stop")
    p.add_argument("--table", action="store_true", help="print the computed memory / communication table and stop")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.table:
        print(table())
        return 0
    lines = {c: launch_line(c, args) for c in args.configs}
    if args.dry_run:
        for line in lines.values():
            print(" ".join(line))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_scale.py needs a CUDA GPU (use --dry-run or --table on CPU)", file=sys.stderr)
        return 2
    for config, line in lines.items():
        out = subprocess.run(line, capture_output=True, text=True)
        found = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        print(found[-1] if out.returncode == 0 and found else
              json.dumps({"config": config, "error": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
