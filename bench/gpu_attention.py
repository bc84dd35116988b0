"""Attention backends on one GPU: PyTorch SDPA vs xFormers vs FlashAttention (``set_attention_backend``).

For each denoiser (the SD1.5 UNet at full size, classic ``AttnProcessor2_0`` layers; a FLUX.1-architecture
transformer cut to a few blocks, diffusers' dispatching processors) and each backend that is available,
in bf16 on CUDA: seconds per forward + backward (median of ``--iters`` after ``--warmup``), peak memory
(``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``), and the largest difference of
the prediction from SDPA's (the backends must agree to bf16 rounding). Prints one Markdown table; with
``--json PATH`` also writes the rows.

    python bench/gpu_attention.py                 # on a GPU: SD1.5 512 px bs 8, FLUX 4+4 blocks 1024 px bs 1
    python bench/gpu_attention.py --dry-run       # anywhere: tiny models, fp32, CPU, SDPA only (checks the script)

A backend whose package is missing (xformers, flash-attn) or that needs CUDA is listed as skipped with
the reason ``set_attention_backend`` gives. Record the figures with the card's name in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import diffalign  # noqa: F401  (before anything imports torchvision on a CPU-only torch)

BACKENDS = ("sdpa", "xformers", "flash")


def build_unet(tiny: bool):
    from diffusers import UNet2DConditionModel

    if tiny:
        return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(32, 64), attention_head_dim=8, cross_attention_dim=32,
                                    norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    # the SD1.5 architecture (runwayml/stable-diffusion-v1-5's unet/config.json)
    return UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, cross_attention_dim=768,
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def unet_inputs(model, batch: int, latent: int, device, dtype):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, latent, latent, generator=g)
    ctx = torch.randn(batch, 77, model.config.cross_attention_dim, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    return lambda: model(x.to(device, dtype), t.to(device), encoder_hidden_states=ctx.to(device, dtype)).sample


def build_flux(tiny: bool):
    from diffusers import FluxTransformer2DModel

    if tiny:
        return FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                      num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                                      axes_dims_rope=(4, 6, 6), guidance_embeds=True)
    # FLUX.1-dev's widths (3072 = 24 heads x 128) with 4 double + 4 single blocks instead of 19 + 38
    return FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=4, num_single_layers=4, attention_head_dim=128,
                                  num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                                  axes_dims_rope=(16, 56, 56), guidance_embeds=True)


def flux_inputs(model, batch: int, tokens: int, device, dtype):
    import torch

    g = torch.Generator().manual_seed(0)
    cfg = model.config
    x = torch.randn(batch, tokens, cfg.in_channels, generator=g)
    ctx = torch.randn(batch, 512 if cfg.joint_attention_dim > 64 else 8, cfg.joint_attention_dim, generator=g)
    pooled = torch.randn(batch, cfg.pooled_projection_dim, generator=g)
    side = int(tokens ** 0.5)
    img_ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(side).float(), torch.arange(side).float(), indexing="ij"), -1).reshape(-1, 3)
    txt_ids = torch.zeros(ctx.shape[1], 3)

    def call():
        return model(hidden_states=x.to(device, dtype), encoder_hidden_states=ctx.to(device, dtype),
                     pooled_projections=pooled.to(device, dtype), timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
                     img_ids=img_ids.to(device), txt_ids=txt_ids.to(device),
                     guidance=torch.full((batch,), 3.5, device=device, dtype=dtype)).sample
    return call


def measure(model, call, backend: str, *, warmup: int, iters: int, device) -> dict:
    import torch

    from diffalign.pipelines.attention import restore_default_attention, set_attention_backend

    try:
        set_attention_backend(model, backend)
    except (ImportError, RuntimeError, ValueError) as e:
        return {"backend": backend, "skipped": str(e).splitlines()[0]}
    cuda = device.type == "cuda"
    times = []
    try:
        for i in range(warmup + iters):
            model.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
                if i == warmup:
                    torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            out = call()
            out.float().square().mean().backward()
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        with torch.no_grad():
            pred = call().float().cpu()
    finally:
        restore_default_attention(model)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return {"backend": backend, "s_per_iter": statistics.median(times), "peak_gb": peak, "pred": pred}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="tiny models, fp32, CPU, SDPA only: checks the script anywhere")
    p.add_argument("--models", nargs="+", default=["unet", "flux"], choices=["unet", "flux"])
    p.add_argument("--unet-batch", type=int, default=8)
    p.add_argument("--unet-latent", type=int, default=64, help="latent side (64 = 512 px)")
    p.add_argument("--flux-batch", type=int, default=1)
    p.add_argument("--flux-tokens", type=int, default=4096, help="image tokens (4096 = 1024 px)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_attention: no CUDA device; run it on a GPU, or with --dry-run to check the script", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    backends = ("sdpa",) if args.dry_run else BACKENDS
    warmup, iters = (0, 1) if args.dry_run else (args.warmup, args.iters)
    torch.manual_seed(0)
    rows = []
    for name in args.models:
        if name == "unet":
            model = build_unet(args.dry_run)
            shape = (2, 8) if args.dry_run else (args.unet_batch, args.unet_latent)
            setting = f"{'tiny UNet' if args.dry_run else 'SD1.5 UNet'}, batch {shape[0]}, {shape[1] * 8} px"
            make = unet_inputs
        else:
            model = build_flux(args.dry_run)
            shape = (1, 16) if args.dry_run else (args.flux_batch, args.flux_tokens)
            setting = f"{'tiny FLUX' if args.dry_run else 'FLUX.1 widths'}, {model.config.num_layers}+{model.config.num_single_layers} blocks, batch {shape[0]}, {shape[1]} tokens"
            make = flux_inputs
        model.to(device, dtype).train()
        call = make(model, *shape, device, dtype)
        reference = None
        for backend in backends:
            row = {"model": setting, **measure(model, call, backend, warmup=warmup, iters=iters, device=device)}
            pred = row.pop("pred", None)
            if pred is not None:
                reference = pred if reference is None else reference
                row["max_abs_diff_vs_sdpa"] = float((pred - reference).abs().max())
            rows.append(row)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    card = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)"
    print(f"| model ({card}, {str(dtype).removeprefix('torch.')}) | backend | s / fwd+bwd | peak GB | max |pred - sdpa| |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['model']} | {r['backend']} | skipped: {r['skipped']} | | |")
        else:
            print(f"| {r['model']} | {r['backend']} | {r['s_per_iter']:.4f} | {r['peak_gb']:.2f} | {r['max_abs_diff_vs_sdpa']:.2e} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device": card, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
