"""Side by side: diffalign's online sampling loop against the original DDPO and Flow-GRPO loops.

What is compared, on the same pipeline object, prompts, initial noise, step noise, steps, CFG and
eta / noise level:

- DDPO (SD architecture): ddpo-pytorch's ``pipeline_with_logprob`` (with its ``ddim_step_with_logprob``)
  against diffalign's rollout loop (``sample_chain`` -> ``guided_step`` -> the adapter's DDIM step,
  what ``DDPOTrainer`` runs) plus ``decode_latents``;
- Flow-GRPO (SD3 architecture): flow_grpo's SD3 ``pipeline_with_logprob`` (with its
  ``sde_step_with_logprob``) against the same diffalign loop with the adapter's Flow-GRPO SDE step.

Both sides get the prompt embeddings precomputed (as both original training scripts pass
``prompt_embeds`` / ``negative_prompt_embeds``), denoise ``--steps`` steps with CFG batched (both
branches in one forward), keep every step's latents and log-probability, and decode to images.
Timed per call: wall (``perf_counter``) and CPU (``process_time``) seconds -> samples/s. The sides
alternate within a round (the order flips every round), each round redraws nothing: same noise.
Printed per round: samples/s of each side and the ratio diffalign / original, and the largest
absolute difference of the latents (every step), the log-probs and the decoded images.

The original code is NOT part of this project. Get it at the commit you want to compare with and
give the repository roots::

    git clone https://github.com/kvablack/ddpo-pytorch /tmp/ddpo-pytorch
    git clone https://github.com/yifan123/flow_grpo /tmp/flow_grpo
    python bench/online_vs_originals.py --ddpo-repo /tmp/ddpo-pytorch --flow-grpo-repo /tmp/flow_grpo

They are imported from those paths unmodified; one shim: ddpo-pytorch imports ``randn_tensor`` from
``diffusers.utils`` (diffusers < 0.21), which now lives in ``diffusers.utils.torch_utils``; it is
aliased before the import. flow_grpo's SDE step draws its noise from torch's global generator (its
pipeline passes no generator), so the diffalign side does too for that comparison (same seed).

Pipelines: the tiny random-init SD / SD3 (``build_tiny_pipeline``, ``--latent`` latent side), or for
DDPO an SD1.5-architecture folder (``--sd-model``, e.g. ``make_fake.py OUT sd15`` -> ``OUT/sd15``)
at ``--resolution``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

FAMILIES = ("sd", "sd3")


# --------------------------------------------------------------------------- loading the originals
def load_ddpo(repo: str):
    """ddpo-pytorch's ``pipeline_with_logprob`` from the repository root ``repo``."""
    import diffusers.utils
    import diffusers.utils.torch_utils

    if not hasattr(diffusers.utils, "randn_tensor"):  # moved in diffusers 0.21; ddpo-pytorch imports the old place
        diffusers.utils.randn_tensor = diffusers.utils.torch_utils.randn_tensor
    sys.path.insert(0, os.path.abspath(repo))
    try:
        from ddpo_pytorch.diffusers_patch.pipeline_with_logprob import pipeline_with_logprob
    finally:
        sys.path.pop(0)
    return pipeline_with_logprob


def load_flow_grpo(repo: str):
    """flow_grpo's SD3 ``pipeline_with_logprob`` from the repository root ``repo``."""
    sys.path.insert(0, os.path.abspath(repo))
    try:
        from flow_grpo.diffusers_patch.sd3_pipeline_with_logprob import pipeline_with_logprob
    finally:
        sys.path.pop(0)
    return pipeline_with_logprob


# --------------------------------------------------------------------------- one side, one call
def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def run_original(family, original, pipe, cond, uncond, x0, a):
    """The original loop: ``(latents [B, S+1, ...], log_probs [B, S], images)``."""
    import torch

    if family == "sd":
        kwargs = dict(prompt_embeds=cond["prompt_embeds"], negative_prompt_embeds=uncond["prompt_embeds"],
                      eta=a.eta, generator=torch.Generator().manual_seed(a.seed + 1))
    else:
        torch.manual_seed(a.seed + 1)  # flow_grpo's step draws from the global generator
        kwargs = dict(prompt_embeds=cond["prompt_embeds"], negative_prompt_embeds=uncond["prompt_embeds"],
                      pooled_prompt_embeds=cond["pooled_prompt_embeds"],
                      negative_pooled_prompt_embeds=uncond["pooled_prompt_embeds"], noise_level=a.noise_level)
    out = original(pipe, num_inference_steps=a.steps, guidance_scale=a.cfg, latents=x0.clone(), output_type="pt",
                   height=x0.shape[-2] * pipe.vae_scale_factor, width=x0.shape[-1] * pipe.vae_scale_factor, **kwargs)
    images, latents, log_probs = (out[0], out[2], out[3]) if family == "sd" else out
    return torch.stack(latents, dim=1), torch.stack(log_probs, dim=1), images


def run_diffalign(family, adapter, cond, uncond, x0, a):
    """diffalign's rollout loop (what the online trainers run): same outputs as :func:`run_original`."""
    import torch

    from diffalign.pipelines.sampling import Guidance, make_sampling_scheduler, sample_chain

    h, w = (x0.shape[-2] * adapter.pipe.vae_scale_factor, x0.shape[-1] * adapter.pipe.vae_scale_factor)
    scheduler = make_sampling_scheduler(adapter, a.steps, h, w)
    n = len(scheduler.timesteps)
    if family == "sd":
        level, generator = a.eta, torch.Generator().manual_seed(a.seed + 1)
    else:
        level, generator = a.noise_level, None
        torch.manual_seed(a.seed + 1)
    chain = sample_chain(adapter, scheduler, x0.clone(), Guidance(cond, uncond, a.cfg), [level] * n,
                         generator=generator, store=[True] * n)
    images = adapter.decode_latents(chain.final)
    latents = torch.cat([chain.latents, chain.final[:, None]], dim=1)
    return latents, chain.log_probs, images


# --------------------------------------------------------------------------- set-up and rounds
def build(family, a):
    """``(pipe, adapter, cond, uncond, x0)`` for ``family`` on the tiny pipeline or ``--sd-model``."""
    import torch
    from diffusers import DDIMScheduler

    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.tiny import build_tiny_pipeline

    if family == "sd" and a.sd_model:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(a.sd_model, safety_checker=None, requires_safety_checker=False,
                                                       torch_dtype=torch.float32)
        side = a.resolution // pipe.vae_scale_factor
    else:
        pipe = build_tiny_pipeline(family, sample_size=a.latent)
        side = a.latent
    if family == "sd":  # ddpo-pytorch asserts a DDIMScheduler; diffalign builds its own DDIM from the same config
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    adapter = adapter_for(pipe)
    adapter.denoiser.eval()
    prompts = [f"a photo of object {i} on a table" for i in range(a.batch)]
    with torch.no_grad():
        cond = adapter.encode_prompt(prompts)
        uncond = adapter.encode_negative_prompt(None, a.batch)
    channels = adapter.latent_channels
    x0 = torch.randn((a.batch, channels, side, side), generator=torch.Generator().manual_seed(a.seed))
    return pipe, adapter, cond, uncond, x0


def max_diff(x, y) -> float:
    return float((x.float() - y.float()).abs().max())


def compare(family, a, original) -> list[dict]:
    import torch

    pipe, adapter, cond, uncond, x0 = build(family, a)
    sides = {"original": lambda: run_original(family, original, pipe, cond, uncond, x0, a),
             "diffalign": lambda: run_diffalign(family, adapter, cond, uncond, x0, a)}
    rows = []
    with torch.no_grad():
        for name in sides:  # warm-up: one call each, untimed
            sides[name]()
        for rnd in range(a.rounds):
            order = list(sides) if rnd % 2 == 0 else list(sides)[::-1]
            got = {}
            for name in order:
                got[name] = _timed(sides[name])
            (lo, po, io), wo, co = got["original"]
            (ld, pd, id_), wd, cd = got["diffalign"]
            row = {"family": family, "round": rnd, "batch": a.batch, "steps": a.steps,
                   "original_wall_s": wo, "original_cpu_s": co, "diffalign_wall_s": wd, "diffalign_cpu_s": cd,
                   "samples_per_s_wall": {"original": a.batch / wo, "diffalign": a.batch / wd},
                   "samples_per_s_cpu": {"original": a.batch / co, "diffalign": a.batch / cd},
                   "ratio_wall": wo / wd, "ratio_cpu": co / cd,
                   "shapes_equal": tuple(lo.shape) == tuple(ld.shape) and tuple(po.shape) == tuple(pd.shape),
                   "max_diff_latents": max_diff(lo, ld), "max_diff_log_probs": max_diff(po, pd),
                   "max_diff_images": max_diff(io, id_), "log_prob_scale": float(po.abs().max())}
            rows.append(row)
            print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()
                              if not isinstance(v, dict)}), flush=True)
    return rows


def spread(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def report(rows, a) -> None:
    print(f"\n{a.batch} samples per call, {a.steps} steps, CFG {a.cfg} (one batched forward), eta {a.eta} (DDPO) / "
          f"noise level {a.noise_level} (Flow-GRPO), {a.threads} thread(s), {a.rounds} rounds; ratio = diffalign / original "
          "samples/s (>1: diffalign faster)")
    print("| loop | original samples/s (wall, CPU) | diffalign samples/s (wall, CPU) | ratio wall, median (min-max) | "
          "ratio CPU, median (min-max) | max diff latents | max diff log-probs | max diff images |")
    print("|---|---|---|---|---|---|---|---|")
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        med = lambda side, k: statistics.median(r[k][side] for r in mine)  # noqa: E731
        name = "DDPO (SD)" if family == "sd" else "Flow-GRPO (SD3)"
        print(f"| {name} | {med('original', 'samples_per_s_wall'):.3f}, {med('original', 'samples_per_s_cpu'):.3f} | "
              f"{med('diffalign', 'samples_per_s_wall'):.3f}, {med('diffalign', 'samples_per_s_cpu'):.3f} | "
              f"{spread([r['ratio_wall'] for r in mine])} | {spread([r['ratio_cpu'] for r in mine])} | "
              f"{max(r['max_diff_latents'] for r in mine):.2e} | {max(r['max_diff_log_probs'] for r in mine):.2e} | "
              f"{max(r['max_diff_images'] for r in mine):.2e} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ddpo-repo", help="root of a kvablack/ddpo-pytorch checkout (for the sd loop)")
    p.add_argument("--flow-grpo-repo", help="root of a yifan123/flow_grpo checkout (for the sd3 loop)")
    p.add_argument("--families", default="sd,sd3", help="comma list of: sd (DDPO), sd3 (Flow-GRPO)")
    p.add_argument("--sd-model", default=None, help="an SD1.5-architecture folder for the DDPO loop (default: tiny SD)")
    p.add_argument("--resolution", type=int, default=256, help="image side with --sd-model")
    p.add_argument("--latent", type=int, default=16, help="latent side of the tiny pipelines")
    p.add_argument("--batch", type=int, default=4, help="samples per call")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cfg", type=float, default=4.5)
    p.add_argument("--eta", type=float, default=1.0, help="DDIM eta (DDPO)")
    p.add_argument("--noise-level", type=float, default=0.7, help="SDE noise level (Flow-GRPO)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    a = p.parse_args(argv)
    families = a.families.split(",")
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        p.error(f"unknown families {bad}; known: {list(FAMILIES)}")
    need = {"sd": ("--ddpo-repo", a.ddpo_repo), "sd3": ("--flow-grpo-repo", a.flow_grpo_repo)}
    missing = [need[f][0] for f in families if not (need[f][1] and os.path.isdir(need[f][1]))]
    if a.dry_run:
        for f in families:
            model = a.sd_model if (f == "sd" and a.sd_model) else f"tiny {f} (latent {a.latent})"
            print(f"{f}: {model}, batch {a.batch}, {a.steps} steps, CFG {a.cfg}, "
                  f"{'eta ' + str(a.eta) if f == 'sd' else 'noise level ' + str(a.noise_level)}, "
                  f"{a.rounds} rounds, original from {need[f][1] or 'MISSING ' + need[f][0]}")
        return 0
    if missing:
        p.error(f"{', '.join(missing)} must be the root of the original repository (see --help)")

    import torch

    import diffalign  # noqa: F401  (torchvision shim for CPU-only torch)

    torch.set_num_threads(a.threads)
    loaders = {"sd": lambda: load_ddpo(a.ddpo_repo), "sd3": lambda: load_flow_grpo(a.flow_grpo_repo)}
    rows = []
    for family in families:
        rows += compare(family, a, loaders[family]())
    report(rows, a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"argv": sys.argv, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
