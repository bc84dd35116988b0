"""Overlay several ``bench/shapes_online.py`` runs: the rollouts' reward per iteration (running mean)
and the held-out judge score before and after training.

    python bench/compare_online_runs.py OUT.png RUN_DIR[=LABEL] [RUN_DIR[=LABEL] ...] [--window 10]

Each ``RUN_DIR`` is a ``--out`` folder of ``bench/shapes_online.py`` (``summary.json`` and the
training run's ``logs/metrics.jsonl`` under ``train/`` or wherever ``summary.json`` says). Prints a
Markdown table of the runs' before/after/change.
"""
from __future__ import annotations

import argparse
import json
import os


def load_run(folder: str) -> tuple[dict, list[tuple[int, float]]]:
    """The run's summary and its (iteration, rollout reward) pairs."""
    from diffalign.train.metrics import read_metrics

    summary_path = os.path.join(folder, "summary.json")
    if not os.path.isfile(summary_path):
        raise FileNotFoundError(f"{summary_path}: not a bench/shapes_online.py output folder")
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    metrics = os.path.join(folder, "train", "logs", "metrics.jsonl")
    for item in summary.get("overrides", []):
        if item.startswith("output_dir="):
            metrics = os.path.join(item.split("=", 1)[1], "logs", "metrics.jsonl")
    rows = read_metrics(metrics) if os.path.isfile(metrics) else []
    return summary, [(r["step"], r["reward_mean"]) for r in rows if "reward_mean" in r]


def running_mean(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR=LABEL")
    p.add_argument("--window", type=int, default=10, help="running-mean window (iterations)")
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    print("| run | before | after | change |\n|---|---|---|---|")
    for k, spec in enumerate(args.runs):
        folder, _, label = spec.partition("=")
        label = label or os.path.basename(os.path.normpath(folder))
        summary, curve = load_run(folder)
        before, after = summary["judge_overall"]["before"], summary["judge_overall"]["after"]
        print(f"| {label} | {before:.3f} | {after:.3f} | {after - before:+.3f} |")
        if curve:
            steps, rewards = zip(*curve)
            ax[0].plot(steps, running_mean(list(rewards), args.window), label=label, lw=1.5)
        ax[1].plot([0, 1], [before, after], marker="o", label=label)
    ax[0].set_title(f"rollout reward (running mean of {args.window} iterations)")
    ax[0].set_xlabel("iteration")
    ax[1].set_xticks([0, 1], ["before", "after"])
    ax[1].set_title("held-out judge score (GenEval overall)")
    for a in ax:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
