"""Side by side: diffusers' own Diffusion-DPO example script against ``diffalign train``, same work.

Both sides train a LoRA (rank 8 on to_q/k/v/out.0, alpha = rank, gaussian init) on the same
checkpoint and the same Pick-a-Pic-format parquet, fp32, same resolution, same pairs per step, AdamW,
gradient checkpointing (unless overridden), one torch thread, no data-loader workers: per step two
UNet forwards over winners+losers (policy with gradients, reference with the adapters off) and one
backward. Each side runs in its own fresh process; the sides alternate (diffusers, diffalign,
diffusers, ...) for ``--rounds`` rounds so that both see the same machine load.

What is timed: the interval between consecutive optimizer steps (a global
``torch.optim`` step hook), after ``--warmup`` steps, so every side pays its own data loading,
encoding and Python overhead inside the step. Wall seconds (``perf_counter``) and CPU seconds of the
process (``process_time``) per step. diffalign's latent/text cache build happens in set-up, before
the first step; its duration is reported separately (``cache_build_s``; the cache is built in round
1 and reused by later rounds, as a real run reuses it).

Step peak memory: before each timed step the process's resident-set high-water mark is reset
(``/proc/self/clear_refs``); after it, ``VmHWM`` minus the resident size at the reset is that step's
peak growth. ``step_peak_mb`` is the largest over the timed steps; ``peak_rss_mb`` is the absolute
high-water mark during the timed steps (weights included) and the figure to compare across sides:
an allocator that keeps freed memory (diffalign's ``cpu_reuse_freed_memory``) shows ~0 growth since
what it reuses is already resident. ``--malloc tight`` runs both sides with
glibc serving every allocation above 64 KiB by mmap (one arena) so that RSS follows live tensor
memory closely (costs speed: use it for a memory figure, not a time figure).

The diffusers script is NOT part of this project. Get it from the diffusers repository (it is not in
the wheel), at the commit you want to compare with::

    git clone --depth 1 https://github.com/huggingface/diffusers /tmp/diffusers
    ANCHOR=/tmp/diffusers/examples/research_projects/diffusion_dpo/train_diffusion_dpo.py

It runs unmodified, in-process under ``runpy``, with three shims: an empty ``wandb`` module (its
top-level ``import wandb`` is only used with ``--report_to wandb``), ``--report_to all`` (no tracker
installed = no tracker), and diffalign's torchvision import shim for CPU-only torch builds.

    python ../shared/bench/make_fake.py /tmp/fake sd15           # random-weight SD1.5 + pick512 parquet
    python bench/dpo_vs_diffusers.py --anchor $ANCHOR --model /tmp/fake/sd15 --data /tmp/fake/pick512 \
        --resolution 128 --batch-size 2 --rounds 3 --steps 3 --warmup 1 --threads 1

Extra sides: ``--side NAME=key=value,key=value`` adds a diffalign variant with config overrides
(e.g. ``--side nockpt=model.gradient_checkpointing=false``; an item ``env:KEY=VALUE`` sets an
environment variable for that side only); ``--sides`` picks which run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# --------------------------------------------------------------------------- child: one side, one process
def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class StepClock:
    """Called after every optimizer step: times the interval since the previous one and tracks the
    resident-set growth within it."""

    def __init__(self, warmup: int):
        self.warmup, self.count = warmup, 0
        self.steps: list[dict] = []
        self._mark()

    def _mark(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self.can_reset = True
        except OSError:
            self.can_reset = False
        self.rss0 = _rss_kb("VmRSS")
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def __call__(self, *_args) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.count += 1
        if self.count > self.warmup:
            hwm = _rss_kb("VmHWM")
            self.steps.append({"wall_s": t - self.t0, "cpu_s": c - self.c0,
                               "peak_growth_mb": (hwm - self.rss0) / 1024 if self.can_reset else None,
                               "peak_rss_mb": hwm / 1024})
        self._mark()


def _split_overrides(text: str) -> list[str]:
    """``a=1,b=[x,y]`` -> ``["a=1", "b=[x,y]"]`` (commas inside brackets belong to a list value)."""
    import re

    return re.split(r",(?![^\[]*\])", text)


def _subset_parquet(src: str, dst: str, n: int) -> str:
    import glob

    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(src, "*.parquet"))) if os.path.isdir(src) else [src]
    table = pa.concat_tables([pq.read_table(f) for f in files]).slice(0, n)
    if os.path.exists(os.path.join(dst, "train-00000-of-00001.parquet")):
        return dst  # a reused --work folder keeps its subset (and so its latent cache)
    os.makedirs(dst, exist_ok=True)
    pq.write_table(table, os.path.join(dst, "train-00000-of-00001.parquet"))
    return dst


def run_child(a) -> None:
    import torch

    import diffalign  # noqa: F401  (torchvision shim for CPU-only torch)
    from torch.optim.optimizer import register_optimizer_step_post_hook

    torch.set_num_threads(a.threads)
    clock = StepClock(a.warmup)
    register_optimizer_step_post_hook(clock)
    result: dict = {"side": a.child}
    start = time.perf_counter()
    steps = a.warmup + a.steps
    if a.child == "diffusers":
        import importlib.machinery
        import runpy
        import types

        stub = types.ModuleType("wandb")  # no package metadata: accelerate counts wandb as not installed
        stub.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
        sys.modules.setdefault("wandb", stub)
        sys.argv = [a.anchor, "--pretrained_model_name_or_path", a.model, "--dataset_name", a.data_subset,
                    "--dataset_split_name", "train", "--resolution", str(a.resolution),
                    "--train_batch_size", str(a.batch_size), "--rank", str(a.rank), "--learning_rate", "1e-5",
                    "--max_train_steps", str(steps), "--seed", "0", "--output_dir", os.path.join(a.work, "out-diffusers"),
                    "--report_to", "all", "--no_hflip", "--dataloader_num_workers", "0", "--mixed_precision", "no",
                    "--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--vae_encode_batch_size", str(2 * a.batch_size)]
        if a.gradient_checkpointing:
            sys.argv.append("--gradient_checkpointing")
        runpy.run_path(a.anchor, run_name="__main__")
    else:
        from diffalign.cli import main as cli_main
        from diffalign.train import latent_cache

        build = latent_cache.LatentCache.build.__func__
        built: dict = {}

        def timed_build(cls, *args, **kwargs):
            t = time.perf_counter()
            fresh = not latent_cache.LatentCache.is_complete(args[0] if args else kwargs["folder"])
            out = build(cls, *args, **kwargs)
            built["cache_build_s"] = round(time.perf_counter() - t, 2) if fresh else 0.0
            return out

        latent_cache.LatentCache.build = classmethod(timed_build)
        overrides = [
            "trainer=offline", "method=diffusion_dpo", f"model.pretrained={a.model}", f"data.path={a.data_subset}",
            f"data.resolution={a.resolution}", f"batch_size={a.batch_size}", f"max_steps={steps}",
            f"lora.rank={a.rank}", "optim.lr=1e-5", "optim.lr_scheduler=constant", "mixed_precision=no",
            "model.weight_dtype=fp32", f"model.gradient_checkpointing={str(a.gradient_checkpointing).lower()}",
            f"num_threads={a.threads}", "progress_bar=false", f"cache.dir={os.path.join(a.work, 'cache')}",
            f"output_dir={os.path.join(a.work, 'out-' + a.child)}", "overwrite=true",
        ] + [o for o in _split_overrides(a.overrides) if o and not o.startswith("env:")]
        rc = cli_main(["train", os.path.join(HERE, "dpo_vs_diffusers.yaml"), *overrides])
        if rc:
            raise SystemExit(rc)
        result.update(built)
    result["total_s"] = round(time.perf_counter() - start, 1)
    result["steps"] = clock.steps
    with open(a.result, "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------------- parent: rounds and the report
def summarise(steps: list[dict], batch_size: int) -> dict:
    wall = statistics.median(s["wall_s"] for s in steps)
    cpu = statistics.median(s["cpu_s"] for s in steps)
    growth = [s["peak_growth_mb"] for s in steps if s["peak_growth_mb"] is not None]
    return {"wall_s": wall, "cpu_s": cpu, "pairs_per_s_wall": batch_size / wall, "pairs_per_s_cpu": batch_size / cpu,
            "step_peak_mb": max(growth) if growth else None, "peak_rss_mb": max(s["peak_rss_mb"] for s in steps)}


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{statistics.median(values):.2f}x (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--anchor", help="path to diffusers' examples/research_projects/diffusion_dpo/train_diffusion_dpo.py")
    p.add_argument("--model", help="a diffusers SD1.5-architecture folder (make_fake.py OUT sd15 -> OUT/sd15)")
    p.add_argument("--data", help="a Pick-a-Pic-format parquet file or folder (make_fake.py -> OUT/pick512)")
    p.add_argument("--pairs", type=int, default=32, help="pairs taken from --data (both sides read the same subset)")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=2, help="pairs per optimizer step")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    p.add_argument("--warmup", type=int, default=1, help="steps per process left out of the timing")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    p.add_argument("--side", action="append", default=[], metavar="NAME=OVERRIDES",
                   help="a diffalign variant: NAME=key=value,key=value (config overrides)")
    p.add_argument("--sides", default=None, help="comma list of sides to run (default: diffusers, diffalign and every --side)")
    p.add_argument("--malloc", default="default", choices=["default", "tight"])
    p.add_argument("--work", default=None, help="working folder (default: a fresh temp folder)")
    p.add_argument("--json", default=None, help="also write every round's figures to this file")
    p.add_argument("--dry-run", action="store_true", help="print the plan (commands) and exit")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="", help=argparse.SUPPRESS)
    p.add_argument("--data-subset", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        run_child(a)
        return 0

    variants = {"diffusers": None, "diffalign": ""}
    for s in a.side:
        name, _, overrides = s.partition("=")
        variants[name] = overrides
    names = a.sides.split(",") if a.sides else list(variants)
    unknown = [n for n in names if n not in variants]
    if unknown:
        p.error(f"unknown side(s) {unknown}; known: {list(variants)}")
    if "diffusers" in names and not a.dry_run and not (a.anchor and os.path.exists(a.anchor)):
        p.error("--anchor must be the path of diffusers' train_diffusion_dpo.py (see --help for how to get it)")
    if not a.dry_run and not (a.model and a.data):
        p.error("--model and --data are required")
    work = a.work or ("WORK" if a.dry_run else tempfile.mkdtemp(prefix="dpo-vs-diffusers-"))
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if a.malloc == "tight":
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="1")

    def child_cmd(name: str, rnd: int) -> list[str]:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "diffusers" if name == "diffusers" else name,
               "--result", os.path.join(work, f"r{rnd}-{name}.json"), "--work", work,
               "--data-subset", os.path.join(work, "data"), "--resolution", str(a.resolution),
               "--batch-size", str(a.batch_size), "--rank", str(a.rank), "--steps", str(a.steps),
               "--warmup", str(a.warmup), "--threads", str(a.threads), "--model", str(a.model)]
        if not a.gradient_checkpointing:
            cmd.append("--no-gradient-checkpointing")
        if name == "diffusers":
            cmd += ["--anchor", os.path.abspath(a.anchor or "ANCHOR")]
        else:
            cmd += ["--overrides", variants[name]]
        return cmd

    if a.dry_run:
        for name in names:
            print(name, ":", " ".join(child_cmd(name, 0)))
        return 0
    _subset_parquet(a.data, os.path.join(work, "data"), a.pairs)
    rows: list[dict] = []
    for rnd in range(a.rounds):
        for name in names:
            cmd = child_cmd(name, rnd)
            log = os.path.join(work, f"r{rnd}-{name}.log")
            side_env = dict(env, **dict(o[4:].split("=", 1) for o in _split_overrides(variants[name] or "")
                                         if o.startswith("env:")))
            with open(log, "w") as f:
                rc = subprocess.call(cmd, env=side_env, stdout=f, stderr=subprocess.STDOUT)
            if rc:
                print(f"round {rnd} {name}: failed (rc {rc}), see {log}", flush=True)
                return rc
            with open(os.path.join(work, f"r{rnd}-{name}.json")) as f:
                res = json.load(f)
            row = {"round": rnd, "side": name, **summarise(res["steps"], a.batch_size),
                   "cache_build_s": res.get("cache_build_s"), "process_s": res["total_s"]}
            rows.append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"argv": sys.argv, "rows": rows}, f, indent=1)

    print(f"\n{a.resolution} px, {a.batch_size} pairs/step, LoRA r{a.rank}, fp32, {a.threads} thread(s), "
          f"gradient checkpointing {'on' if a.gradient_checkpointing else 'off'}, {a.rounds} rounds x {a.steps} "
          f"timed steps per side (median step per round); ratios are per round, vs diffusers in the same round")
    print("| side | wall s/step | CPU s/step | pairs/s (wall) | pairs/s (CPU) | step peak MB | peak RSS MB | "
          "ratio wall | ratio CPU | cache build s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = {r["round"]: r for r in rows if r["side"] == "diffusers"}
    for name in names:
        mine = [r for r in rows if r["side"] == name]
        med = lambda k: statistics.median(r[k] for r in mine)  # noqa: E731
        ratio_w = [base[r["round"]]["wall_s"] / r["wall_s"] for r in mine if r["round"] in base]
        ratio_c = [base[r["round"]]["cpu_s"] / r["cpu_s"] for r in mine if r["round"] in base]
        peaks = [r["step_peak_mb"] for r in mine if r["step_peak_mb"] is not None]
        builds = [r["cache_build_s"] for r in mine if r["cache_build_s"]]
        print(f"| {name} | {med('wall_s'):.2f} | {med('cpu_s'):.2f} | {med('pairs_per_s_wall'):.3f} | "
              f"{med('pairs_per_s_cpu'):.3f} | {max(peaks):.0f} | {max(r['peak_rss_mb'] for r in mine):.0f} | "
              f"{spread(ratio_w) if ratio_w else '-'} | {spread(ratio_c) if ratio_c else '-'} | "
              f"{', '.join(f'{b:.1f}' for b in builds) or '-'} |" if peaks else f"| {name} | ... |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
