"""Where an online iteration ("epoch": sample -> score -> update) spends its time, and its peak memory
versus the number of trained timesteps: DDPO on the SD1.5 architecture and Flow-GRPO on the SD3
architecture (tiny random-init pipelines by default; ``--sd-model`` an SD1.5 folder such as
``make_fake.py OUT sd15`` -> ``OUT/sd15``).

Timing: each configuration runs ``--epochs`` iterations of the product trainer (``trainer.train()``)
in a fresh process; the per-iteration split is the trainer's own log (``logs/metrics.jsonl``):
``sampling_s`` (denoising + decoding), ``reward_s`` (the reward's own scoring time), ``reward_exposed_s``
(the time the loop waited for rewards: the part of ``reward_s`` not hidden behind sampling) and
``train_s`` (advantages excluded: the updates), beside ``step_time`` (the whole iteration). samples/s
= rollouts of the iteration / ``step_time``. Each trainer runs twice: rewards scored in the loop
(``reward.workers 0``) and on a worker thread while the next sampling batch runs (``reward.workers 1``,
the default), so the hidden reward time shows.

Memory: for every ``T`` in ``--trained`` a fresh process runs one iteration training ``T`` of the
chain's steps (``timestep_fraction = (T + 0.5) / stored steps``) with glibc told to return freed
memory at once (``MALLOC_MMAP_THRESHOLD_=65536 MALLOC_ARENA_MAX=1``: resident memory then follows live
memory). Before the sampling phase and before the update the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs``); the figures are the peak resident size of each phase (weights included)
and the update's peak growth over its start. On a GPU: ``torch.cuda.max_memory_allocated`` instead.

    python bench/online_epoch.py --json online_epoch.json --figure online_epoch.png
    python bench/online_epoch.py --dry-run        # the plan

Prints Markdown tables; ``--figure`` draws samples/s per iteration and peak memory versus trained
timesteps (the update's peak growth: what depends on them; matplotlib).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIGHT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}


# --------------------------------------------------------------------------- child: one run, one process
def _status_mb(key: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


class PhaseMemory:
    """Peak memory of each call of the wrapped methods (the kernel's RSS high-water mark, reset at entry)."""

    def __init__(self, device: str):
        self.device, self.rows = device, []

    def _reset(self) -> float:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated() / 2**20
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return _status_mb("VmRSS")

    def _peak(self) -> float:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        return _status_mb("VmHWM")

    def wrap(self, obj, name: str, phase: str) -> None:
        inner = getattr(obj, name)

        def wrapped(*args, **kwargs):
            start = self._reset()
            out = inner(*args, **kwargs)
            peak = self._peak()
            self.rows.append({"phase": phase, "start_mb": start, "peak_mb": peak, "growth_mb": peak - start})
            return out

        setattr(obj, name, wrapped)


def run_child(a) -> dict:
    import diffalign  # noqa: F401  (torchvision shim first)
    import torch

    from diffalign.pipelines import adapter_for, load_adapter
    from diffalign.pipelines.tiny import build_tiny_pipeline
    from diffalign.train import get_trainer_class
    from diffalign.train.metrics import read_metrics
    from diffalign.train.online import config as C

    torch.set_num_threads(a.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    family = "sd" if a.trainer == "ddpo" else "sd3"
    model = a.sd_model if family == "sd" else a.sd3_model
    if model:
        adapter = load_adapter(model, torch_dtype=torch.bfloat16 if device == "cuda" else torch.float32, device=device)
    else:
        adapter = adapter_for(build_tiny_pipeline(family, sample_size=a.latent)).to(device)
    cls = C.DDPOConfig if a.trainer == "ddpo" else C.FlowGRPOConfig
    cfg = cls(output_dir=tempfile.mkdtemp(prefix="online-epoch-"), max_steps=a.epochs, progress_bar=False,
              sample_grid_every=0, seed=0)
    s = cfg.sampling
    s.num_inference_steps, s.batch_size, s.num_batches, s.guidance_scale = a.steps, a.batch, a.num_batches, a.cfg
    if a.resolution:
        s.height = s.width = a.resolution
    cfg.batch_size = a.batch
    cfg.lora.rank = 4
    cfg.model.gradient_checkpointing = False
    cfg.reward.name, cfg.reward.workers = a.reward, a.workers
    cfg.num_threads = a.threads
    if a.trainer == "flow_grpo":
        cfg.group_size = 2
    stored = a.steps  # every step's transition is stored (no SDE window)
    if a.trained:
        cfg.timestep_fraction = (a.trained + 0.5) / stored
    trainer = get_trainer_class(a.trainer)(cfg, adapter=adapter)
    mem = PhaseMemory(device)
    mem.wrap(trainer, "collect", "sampling")
    mem.wrap(trainer, "train_on", "update")
    cpu_per_step: list[float] = []
    step = trainer.step

    def timed_step(*args, **kwargs):  # process CPU seconds of the iteration (every thread: the reward worker too)
        c = time.process_time()
        out = step(*args, **kwargs)
        cpu_per_step.append(time.process_time() - c)
        return out

    trainer.step = timed_step
    t0, c0 = time.perf_counter(), time.process_time()
    result = trainer.train()
    rows = [r for r in read_metrics(result.metrics_path) if "train_s" in r]
    keys = ("sampling_s", "reward_s", "reward_exposed_s", "train_s", "step_time", "optimizer_steps")
    rollouts = a.batch * a.num_batches
    epochs = [{**{k: r.get(k) for k in keys}, "samples_per_s": rollouts / r["step_time"], "cpu_s": c,
               "samples_per_cpu_s": rollouts / c} for r, c in zip(rows, cpu_per_step)]
    trained_steps = trainer.num_trained_steps(stored)
    return {"trainer": a.trainer, "family": family, "workers": a.workers, "device": device,
            "trained_timesteps": trained_steps, "rollouts_per_epoch": rollouts, "epochs": epochs,
            "memory": mem.rows, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


# --------------------------------------------------------------------------- parent
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--trainers", default="ddpo,flow_grpo")
    p.add_argument("--sd-model", default=None, help="SD1.5-architecture folder for DDPO (default: the tiny SD)")
    p.add_argument("--sd3-model", default=None, help="SD3-architecture folder for Flow-GRPO (default: the tiny SD3)")
    p.add_argument("--latent", type=int, default=32, help="latent side of the tiny models (image = 2x)")
    p.add_argument("--resolution", type=int, default=None, help="image side (default: the model's)")
    p.add_argument("--steps", type=int, default=10, help="sampling steps")
    p.add_argument("--batch", type=int, default=4, help="rollouts per sampling batch (also the training micro-batch)")
    p.add_argument("--num-batches", type=int, default=2, help="sampling batches per iteration")
    p.add_argument("--cfg", type=float, default=4.5, help="guidance scale (both branches in one forward)")
    p.add_argument("--epochs", type=int, default=4, help="iterations per timing run (the first includes warm-up)")
    p.add_argument("--reward", default="jpeg_compressibility")
    p.add_argument("--workers", default="0,1", help="reward.workers values to time")
    p.add_argument("--trained", default="1,2,4,8", help="trained timesteps for the memory sweep ('' = none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None, help="PNG: samples/s per iteration and peak memory vs trained timesteps")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--replot", default=None, help="tables and --figure from a --json file of an earlier run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--child-trained", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-trainer", default="ddpo", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.replot:
        with open(a.replot) as f:
            runs = json.load(f)["runs"]
        report(runs, a)
        if a.figure:
            figure(runs, a.figure)
        return 0
    if a.child:
        a.trainer, a.workers, a.trained = a.child_trainer, a.child_workers, a.child_trained
        print("RESULT " + json.dumps(run_child(a)), flush=True)
        return 0

    trainers = [t for t in a.trainers.split(",") if t]
    plan = [(t, int(w), 0, a.epochs, False) for t in trainers for w in a.workers.split(",") if w != ""]
    plan += [(t, 1, int(n), 1, True) for t in trainers for n in a.trained.split(",") if n != ""]
    base = [sys.executable, os.path.abspath(__file__), "--child", "--latent", str(a.latent), "--steps", str(a.steps),
            "--batch", str(a.batch), "--num-batches", str(a.num_batches), "--cfg", str(a.cfg),
            "--reward", a.reward, "--threads", str(a.threads)]
    for flag, value in (("--sd-model", a.sd_model), ("--sd3-model", a.sd3_model), ("--resolution", a.resolution)):
        if value:
            base += [flag, str(value)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    runs = []
    for trainer, workers, trained, epochs, tight in plan:
        cmd = base + ["--child-trainer", trainer, "--child-workers", str(workers), "--child-trained", str(trained),
                      "--epochs", str(epochs)]
        if a.dry_run:
            print(("MALLOC tight: " if tight else "") + " ".join(cmd))
            continue
        proc = subprocess.run(cmd, env=dict(env, **TIGHT_MALLOC) if tight else env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode or 1
        res = json.loads(lines[-1][7:])
        res["memory_run"] = tight
        runs.append(res)
        print(f"{trainer} workers={workers} trained={res['trained_timesteps']} {'memory' if tight else 'timing'}: "
              f"{res['wall_s']:.1f} s", file=sys.stderr, flush=True)
    if a.dry_run:
        return 0
    report(runs, a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"argv": sys.argv, "runs": runs}, f, indent=1)
    if a.figure:
        figure(runs, a.figure)
    return 0


def report(runs: list[dict], a) -> None:
    print(f"\n{a.steps} sampling steps, CFG {a.cfg} (one batched forward), {a.batch} x {a.num_batches} rollouts per "
          f"iteration, LoRA r4, reward {a.reward}, {a.threads} thread(s); seconds from the trainer's log")
    print("| trainer | reward.workers | iteration | sampling_s | reward_s | reward_exposed_s | train_s | iteration s | "
          "samples/s | iteration CPU s | samples per CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        if r["memory_run"]:
            continue
        for i, e in enumerate(r["epochs"]):
            print(f"| {r['trainer']} ({r['family']}) | {r['workers']} | {i + 1} | {e['sampling_s']:.2f} | {e['reward_s']:.3f} | "
                  f"{e['reward_exposed_s']:.3f} | {e['train_s']:.2f} | {e['step_time']:.2f} | {e['samples_per_s']:.2f} | "
                  f"{e.get('cpu_s', float('nan')):.2f} | {e.get('samples_per_cpu_s', float('nan')):.2f} |")
    print("\nPeak memory of one iteration versus trained timesteps (MB; RSS with glibc returning freed memory at once"
          " on CPU, max_memory_allocated on a GPU)")
    print("| trainer | trained timesteps | sampling phase peak | update peak | update growth over its start |")
    print("|---|---|---|---|---|")
    for r in runs:
        if not r["memory_run"]:
            continue
        phase = {m["phase"]: m for m in r["memory"]}
        print(f"| {r['trainer']} ({r['family']}) | {r['trained_timesteps']} | {phase['sampling']['peak_mb']:.0f} | "
              f"{phase['update']['peak_mb']:.0f} | {phase['update']['growth_mb']:.0f} |")


def figure(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in runs:
        if r["memory_run"]:
            continue
        xs = list(range(1, len(r["epochs"]) + 1))
        ax1.plot(xs, [e["samples_per_s"] for e in r["epochs"]], marker="o",
                 label=f"{r['trainer']} ({r['family']}), reward.workers={r['workers']}")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("rollouts / s (whole iteration)")
    ax1.set_title("samples/s per iteration")
    ax1.legend(fontsize=7)
    for trainer in sorted({r["trainer"] for r in runs if r["memory_run"]}):
        mine = sorted((r for r in runs if r["memory_run"] and r["trainer"] == trainer), key=lambda r: r["trained_timesteps"])
        ts = [r["trained_timesteps"] for r in mine]
        ax2.plot(ts, [next(m["growth_mb"] for m in r["memory"] if m["phase"] == "update") for r in mine], "-o",
                 label=f"{trainer} ({mine[0]['family']})")
    ax1.xaxis.get_major_locator().set_params(integer=True)
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("trained timesteps per rollout")
    ax2.set_ylabel("MB over the update's start")
    ax2.set_title("update peak memory growth vs trained timesteps")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
