"""One-GPU Diffusion-DPO speed run: the diffusers script's step against ``diffalign train``, SD1.5 at
512 px (16 pairs/step) and SDXL at 1024 px (8 pairs/step), bf16, SDPA, LoRA r8, AdamW; prints
pairs/s, peak GB and MFU per side. Sized to finish in ~10 minutes on one H100/H200.

Sides (each on random-weight networks of the real architectures, built in memory on the GPU):

- ``diffusers``: the per-step work of diffusers' ``train_diffusion_dpo.py`` / ``_sdxl.py``
  reproduced in-process (the scripts themselves need a dataset on disk and accelerate launch;
  ``../shared/bench/anchor_dpo.sh`` runs them as they are): VAE encode of both images and text
  encoding every step, eager peft LoRA UNet (bf16 weights, bf16 autocast), policy forward,
  reference forward with adapters disabled, gradient checkpointing, non-fused AdamW.
- ``diffalign`` (eager) and ``diffalign-compiled``: the product trainer
  (``OfflinePreferenceTrainer`` with the pipeline passed as ``adapter=`` and random pairs as
  ``dataset=``): latents and text cached once before training (build time printed apart), one
  training forward (``PipelineAdapter.training_errors``), ``model.compile`` for the compiled side.

Timing: optimizer step to optimizer step (a global ``torch.optim`` step hook, CUDA-synchronised),
after ``--warmup`` steps (which include the compile). Peak: ``torch.cuda.max_memory_allocated``
over the timed steps (reset after warm-up). MFU: model FLOPs per step (4 UNet-forward equivalents
per image: policy forward + backward (2x) + reference forward, counted once per size with
``torch.utils.flop_counter`` on one forward) / step time / the card's dense bf16 peak (``--peak-tflops``,
default from the device name: H100 SXM / H200 989, H100 PCIe 756, A100 312).

  python bench/gpu_dpo.py                       # both models, all sides (GPU)
  python bench/gpu_dpo.py --models sd15 --sides diffusers,diffalign-compiled --steps 10
  python bench/gpu_dpo.py --dry-run             # the plan, on any machine
  python bench/gpu_dpo.py --smoke               # tiny architectures on CPU: checks the code paths
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

SETTINGS = {"sd15": {"resolution": 512, "pairs": 16}, "sdxl": {"resolution": 1024, "pairs": 8}}
SIDES = ("diffusers", "diffalign", "diffalign-compiled")
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0))

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
                 attention_head_dim=8, cross_attention_dim=768, down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                 up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280],
                 attention_head_dim=[5, 10, 20], cross_attention_dim=2048, transformer_layers_per_block=[1, 2, 10],
                 use_linear_projection=True, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
VAE = dict(act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
           norm_num_groups=32)


def build_pipeline(model: str, smoke: bool, device, dtype):
    """A random-weight pipeline of the real architecture (``--smoke``: diffalign's tiny one)."""
    import torch

    if smoke:
        from diffalign.pipelines.tiny import build_tiny_pipeline

        return build_tiny_pipeline("sd" if model == "sd15" else "sdxl").to(device, dtype)
    from diffusers import (AutoencoderKL, DDPMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from diffalign.pipelines.tokenizers import clip_tokenizer

    clip_l = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
    sched = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    torch.manual_seed(0)
    with torch.device(device):
        if model == "sd15":
            pipe = StableDiffusionPipeline(
                vae=AutoencoderKL(sample_size=512, scaling_factor=0.18215, **VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**clip_l)),
                tokenizer=clip_tokenizer("<|endoftext|>"), unet=UNet2DConditionModel(**SD15_UNET),
                scheduler=DDPMScheduler(**sched, clip_sample=False, steps_offset=1), safety_checker=None,
                feature_extractor=None, requires_safety_checker=False)
        else:
            clip_g = dict(clip_l, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                          hidden_act="gelu", projection_dim=1280)
            pipe = StableDiffusionXLPipeline(
                vae=AutoencoderKL(sample_size=1024, scaling_factor=0.13025, force_upcast=False, **VAE),
                text_encoder=CLIPTextModel(CLIPTextConfig(**clip_l)),
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**clip_g)),
                tokenizer=clip_tokenizer("<|endoftext|>"), tokenizer_2=clip_tokenizer("!"), unet=UNet2DConditionModel(**SDXL_UNET),
                scheduler=EulerDiscreteScheduler(**sched, steps_offset=1))
    return pipe.to(device, dtype)


class StepClock:
    def __init__(self, warmup: int, cuda: bool):
        import torch

        self.torch, self.warmup, self.cuda, self.count, self.times = torch, warmup, cuda, 0, []
        self.t0 = time.perf_counter()

    def __call__(self, *_args) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
        t = time.perf_counter()
        self.count += 1
        if self.count > self.warmup:
            self.times.append(t - self.t0)
        elif self.count == self.warmup and self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()


def unet_gflop_per_sample(pipe, model: str, resolution: int, device, dtype) -> float:
    """Forward FLOPs of the UNet for one sample at ``resolution`` (``torch.utils.flop_counter``)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    side = resolution // pipe.vae_scale_factor
    x = torch.randn(1, unet.config.in_channels, side, side, device=device, dtype=dtype)
    kw = dict(encoder_hidden_states=torch.randn(1, 77, unet.config.cross_attention_dim, device=device, dtype=dtype))
    if unet.config.addition_embed_type == "text_time":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        kw["added_cond_kwargs"] = dict(text_embeds=torch.randn(1, pooled, device=device, dtype=dtype),
                                       time_ids=torch.randn(1, 6, device=device, dtype=dtype))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor([500], device=device), **kw)
    return counter.get_total_flops() / 1e9


def run_diffusers_side(pipe, model, resolution, pairs, steps, warmup, device, dtype, clock):
    """The per-step work of diffusers' train_diffusion_dpo(.py|_sdxl.py), in-process."""
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig

    unet, vae = pipe.unet, pipe.vae
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    unet.enable_gradient_checkpointing()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-2)
    ac = pipe.scheduler.alphas_cumprod.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    prompts = [f"a photo of object {i} on a table" for i in range(pairs)]
    xl = model == "sdxl"
    for _ in range(warmup + steps):
        pixels = torch.rand(2 * pairs, 3, resolution, resolution, device=device, generator=gen, dtype=dtype) * 2 - 1
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
            if xl:
                emb, _, pooled, _ = pipe.encode_prompt(prompts, device=device, num_images_per_prompt=1,
                                                       do_classifier_free_guidance=False)
                time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device,
                                        dtype=dtype).repeat(2 * pairs, 1)
                kw = dict(added_cond_kwargs=dict(text_embeds=pooled.repeat(2, 1), time_ids=time_ids))
            else:
                emb = pipe.encode_prompt(prompts, device, 1, False)[0]
                kw = {}
            emb = emb.repeat(2, 1, 1)
        noise = torch.randn_like(latents).chunk(2)[0].repeat(2, 1, 1, 1)
        t = torch.randint(0, 1000, (pairs,), device=device, generator=gen).repeat(2)
        a = ac[t].view(-1, 1, 1, 1)
        noisy = (a.sqrt() * latents.float() + (1 - a).sqrt() * noise.float()).to(dtype)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            pred = unet(noisy, t, emb, **kw).sample
            err = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
            unet.disable_adapters()
            with torch.no_grad():
                ref = F.mse_loss(unet(noisy, t, emb, **kw).sample.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
            unet.enable_adapters()
        mw, ml = err.chunk(2)
        rw, rl = ref.chunk(2)
        loss = -F.logsigmoid(2500 * ((rw - rl) - (mw - ml))).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()


def run_diffalign_side(pipe, model, resolution, pairs, steps, warmup, compiled, work, device, smoke):
    import numpy as np

    from diffalign.pipelines import adapter_for
    from diffalign.train.offline import CacheConfig, OfflineConfig, OfflinePreferenceTrainer

    rng = np.random.default_rng(0)
    rows = [{"caption": f"a photo of object {i} on a table",
             "jpg_0": rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8),
             "jpg_1": rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8), "label_0": 1.0}
            for i in range(pairs * 2)]
    bf16 = not smoke
    cfg = OfflineConfig(
        output_dir=os.path.join(work, "out"), method="diffusion_dpo", max_steps=warmup + steps, batch_size=pairs,
        mixed_precision="bf16" if bf16 else "no", progress_bar=False, overwrite=True,
        cache=CacheConfig(dir=os.path.join(work, "cache")), loss={"beta": 5000.0})
    cfg.data.resolution = resolution
    cfg.model.weight_dtype = "bf16" if bf16 else "fp32"
    cfg.model.gradient_checkpointing = True  # everywhere, like the script (wins over checkpoint_blocks: auto)
    cfg.model.compile = compiled
    cfg.lora.rank = 8
    cfg.optim.lr, cfg.optim.lr_scheduler, cfg.optim.weight_decay = 1e-5, "constant", 1e-2
    t = time.perf_counter()
    trainer = OfflinePreferenceTrainer(cfg, adapter=adapter_for(pipe), dataset=rows)
    setup_s = time.perf_counter() - t
    trainer.train()
    return setup_s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="sd15,sdxl")
    p.add_argument("--sides", default=",".join(SIDES))
    p.add_argument("--steps", type=int, default=8, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (they include the compile)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the card (default: by name)")
    p.add_argument("--budget-s", type=float, default=560, help="skip the remaining runs past this many seconds")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (any machine)")
    p.add_argument("--smoke", action="store_true", help="tiny architectures, fp32, CPU allowed: checks the code paths")
    a = p.parse_args(argv)
    models, sides = a.models.split(","), a.sides.split(",")
    bad = [m for m in models if m not in SETTINGS] + [s for s in sides if s not in SIDES]
    if bad:
        p.error(f"unknown {bad}: models {list(SETTINGS)}, sides {list(SIDES)}")
    plan = [(m, s) for m in models for s in sides]
    if a.dry_run:
        for m, s in plan:
            st = SETTINGS[m]
            print(f"{m}: {st['resolution']} px, {st['pairs']} pairs/step, bf16, LoRA r8, gradient checkpointing, "
                  f"side {s}: {a.warmup} warm-up + {a.steps} timed steps")
        return 0

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import diffalign  # noqa: F401

    cuda = torch.cuda.is_available()
    if not cuda and not a.smoke:
        print("no CUDA device: run with --smoke (tiny models on CPU) or --dry-run", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if not a.smoke else torch.float32
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = a.peak_tflops or next((v for k, v in PEAK_TFLOPS if k in name), None)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    start, results = time.perf_counter(), []
    for model, side in plan:
        if time.perf_counter() - start > a.budget_s:
            print(f"{model} {side}: skipped (past --budget-s {a.budget_s:.0f})", flush=True)
            continue
        st = SETTINGS[model]
        res, pairs = (64, 2) if a.smoke else (st["resolution"], st["pairs"])
        steps, warmup = (1, 1) if a.smoke else (a.steps, a.warmup)
        torch._dynamo.reset()
        pipe = build_pipeline(model, a.smoke, device, dtype)
        gflop = unet_gflop_per_sample(pipe, model, res, device, dtype)
        clock = StepClock(warmup, cuda)
        handle = register_optimizer_step_post_hook(clock)
        t = time.perf_counter()
        setup_s = None
        try:
            if side == "diffusers":
                run_diffusers_side(pipe, model, res, pairs, steps, warmup, device, dtype, clock)
            else:
                with tempfile.TemporaryDirectory() as work:
                    setup_s = run_diffalign_side(pipe, model, res, pairs, steps, warmup, side.endswith("compiled"),
                                                 work, device, a.smoke)
        except torch.OutOfMemoryError:
            print(f"{model} {side}: out of memory", flush=True)
            continue
        finally:
            handle.remove()
        step = sum(clock.times) / len(clock.times)
        flop = 4 * 2 * pairs * gflop * 1e9
        row = {"model": model, "side": side, "device": name, "resolution": res, "pairs_per_step": pairs,
               "s_per_step": round(step, 4), "pairs_per_s": round(pairs / step, 2),
               "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None,
               "unet_gflop_per_sample": round(gflop, 1), "achieved_tflops": round(flop / step / 1e12, 1),
               "mfu": round(flop / step / 1e12 / peak, 3) if peak else None,
               "setup_incl_cache_s": round(setup_s, 1) if setup_s is not None else None,
               "run_s": round(time.perf_counter() - t, 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
        del pipe
        if cuda:
            torch.cuda.empty_cache()
    base = {r["model"]: r for r in results if r["side"] == "diffusers"}
    for r in results:
        if r["model"] in base and r["side"] != "diffusers":
            print(f"{r['model']} {r['side']}: {r['pairs_per_s'] / base[r['model']]['pairs_per_s']:.2f}x the diffusers "
                  f"step's pairs/s at {r['peak_gb']} vs {base[r['model']]['peak_gb']} GB peak", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
