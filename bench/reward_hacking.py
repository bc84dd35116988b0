"""Reward hacking on the shapes world, and the guards against it (docs/online.md, "Reward hacking").

    python bench/reward_hacking.py [--seeds 0,1] [--steps 30] [--eval-every 10] [--configs unguarded,guarded]
                                   [--out DIR] [--figure PNG]
    python bench/reward_hacking.py --plot-only --out DIR     # figures and table from finished runs

Flow-GRPO LoRA on shapes-sd3 (the ``shapes_flow_grpo`` recipe) on the colour prompts (``colors``,
``color_attr``), trained with a hackable proxy: ``shapes_color`` with ``half_area=0.25``, whose
"requested colour present" term saturates only when the colour covers about a quarter of the image
(so painting large areas pays; it never checks shapes, counts or which shape wears which colour).
Every ``--eval-every`` iterations the 60 held-out prompts (test split) are sampled deterministically
and scored by the proxy (``eval_reward_mean``) and by the shapes judge as gold
(``evaluation.gold_reward``: ``gold_reward_mean``). lr 3e-3 and a clip range of 1e-2 (the recipe:
1e-3, 1e-4) so that the proxy is optimised hard within a CPU budget. Configurations:

- ``unguarded``: the proxy alone, no KL (``loss.beta=0``);
- ``guarded``: adaptive KL (``loss.beta=0.01`` start, ``loss.target_kl=0.002``), GRPO-Guard's
  RatioNorm, and the judge mixed into the reward (``weighted_sum`` of the proxy and ``shapes``,
  weight 1 each) with per-reward normalised advantages (``advantages.per_reward``). Its held-out
  reward is the sum, and the gold score is the judge on the same images, so its proxy curve is
  ``eval_reward_mean - gold_reward_mean``;
- ``kl+rationorm`` (not run by default): the KL and RatioNorm guards without the judge.

Runs go one after another (one CPU job), each with ``OMP_NUM_THREADS=1``, seeds outermost (a cut
run has every configuration of the seeds it finished). Writes per run
``OUT/<config>-s<seed>/logs/metrics.jsonl``, then ``OUT/table.md`` (start / end of the proxy and the
gold score per run, and the mean over seeds) and the curves (``--figure``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BASE = ["prompts.categories=[colors,color_attr]", "optim.lr=3e-3", "loss.clip_range=0.01",
        "evaluation.gold_reward.name=shapes", "evaluation.num_prompts=60", "evaluation.batch_size=30",
        "sample_grid_every=0", "checkpointing_steps=0"]
#: the proxy: shapes_color with the "requested colour present" term saturating only at a quarter of
#: the image (half_area 0.25 instead of 0.01), so painting large areas pays, which the judge's shape and
#: count checks do not reward
PROXY = "shapes_color"
PROXY_OPTIONS = "{half_area: 0.25}"
GUARDS = ["loss.beta=0.01", "loss.target_kl=0.002", "loss.ratio_norm=true"]
CONFIGS = {
    "unguarded": [f"reward.name={PROXY}", f"reward.options={PROXY_OPTIONS}", "loss.beta=0"],
    "guarded": ["reward.name=weighted_sum",
                f"reward.options={{rewards: {{proxy: {{reward: {PROXY}, weight: 1.0, half_area: 0.25}}, shapes: 1.0}}}}",
                "advantages.per_reward=true", *GUARDS],
    "kl+rationorm": [f"reward.name={PROXY}", f"reward.options={PROXY_OPTIONS}", *GUARDS],
}


def run(name: str, seed: int, steps: int, every: int, out: str) -> float:
    folder = os.path.join(out, f"{name}-s{seed}")
    cmd = [sys.executable, "-m", "diffalign", "train", "shapes_flow_grpo", f"seed={seed}", f"output_dir={folder}",
           f"max_steps={steps}", f"evaluation.every_steps={every}", "progress_bar=false", *BASE, *CONFIGS[name]]
    print("+", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(os.path.join(out, f"{name}-s{seed}.log"), "w") as log:
        subprocess.run(cmd, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    return time.time() - t0


def curves(out: str, name: str, seed: int) -> list[tuple[int, float, float]]:
    path = os.path.join(out, f"{name}-s{seed}", "logs", "metrics.jsonl")
    if not os.path.exists(path):
        return []
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    # per-reward+judge trains on proxy + judge (weights 1, 1): its held-out reward is the sum, and the
    # gold score is the judge on the same images, so the proxy alone is their difference
    judge_in_reward = "shapes: 1.0}" in " ".join(CONFIGS[name])
    return [(r["step"], r["eval_reward_mean"] - (r["gold_reward_mean"] if judge_in_reward else 0.0), r["gold_reward_mean"])
            for r in rows if "gold_reward_mean" in r]


def report(out: str, seeds: list[int], figure: str | None) -> str:
    lines = ["| config | seed | proxy start | proxy end | gold start | gold end |", "|---|---|---|---|---|---|"]
    data = {}
    for name in CONFIGS:
        runs = {s: c for s in seeds if (c := curves(out, name, s))}
        if not runs:
            continue
        data[name] = runs
        for s, c in runs.items():
            lines.append(f"| {name} | {s} | {c[0][1]:.3f} | {c[-1][1]:.3f} | {c[0][2]:.3f} | {c[-1][2]:.3f} |")
        if len(runs) > 1:
            mean = lambda i, j: sum(c[i][j] for c in runs.values()) / len(runs)  # noqa: E731
            lines.append(f"| {name} | mean of {len(runs)} | {mean(0, 1):.3f} | {mean(-1, 1):.3f} | {mean(0, 2):.3f} | {mean(-1, 2):.3f} |")
    table = "\n".join(lines)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    if figure and data:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
        for k, (name, runs) in enumerate(data.items()):
            colour = f"C{k}"
            for s, c in runs.items():
                steps = [p[0] for p in c]
                for ax, j in zip(axes, (1, 2)):
                    ax.plot(steps, [p[j] for p in c], color=colour, lw=1, alpha=0.8, marker="o", ms=3,
                            label=name if s == min(runs) else None)
        axes[0].set_title(f"proxy: {PROXY} (held-out)")
        axes[1].set_title("gold: shapes judge (held-out)")
        for ax in axes:
            ax.set_xlabel("iteration")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        os.makedirs(os.path.dirname(figure) or ".", exist_ok=True)
        fig.savefig(figure, dpi=100)
        plt.close(fig)
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--configs", default="unguarded,guarded")
    p.add_argument("--out", default="outputs/reward_hacking")
    p.add_argument("--figure", default="docs/img/reward_hacking.png")
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.out, exist_ok=True)
    if not args.plot_only:
        for seed in seeds:
            for name in args.configs.split(","):
                if curves(args.out, name, seed) and len(curves(args.out, name, seed)) > args.steps // args.eval_every:
                    continue  # finished earlier
                seconds = run(name, seed, args.steps, args.eval_every, args.out)
                print(f"{name} seed {seed}: {seconds / 60:.1f} min", flush=True)
                report(args.out, seeds, args.figure)
    print(report(args.out, seeds, args.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
