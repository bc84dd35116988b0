"""The online trainers on the shapes world: held-out judge score (and a reward) before and after.

    python bench/shapes_online.py shapes_ddpo [--out DIR] [--seeds 0] [seed=1 key=value ...]

1. the shipped pipeline (the recipe's ``model.pretrained``) is sampled on held-out prompts (the
   demo's plan: ``--images-per-category`` images of each GenEval category, or of the recipe's
   ``prompts.categories``, spread over its test-split prompts), once per evaluation seed, with its
   shipped sampling settings through the plain diffusers pipeline; the shapes judge scores every
   image, and the mean of the recipe's reward is computed too;
2. the recipe trains (any ``key=value`` overrides it);
3. the LoRA it wrote is loaded into a fresh plain diffusers pipeline with ``load_lora_weights`` and
   the same prompts and seeds are scored again.

The spread between evaluation seeds of the *base* pipeline, and the binomial standard error of the
judge accuracy, say how large a change must be to exceed seed noise. Writes ``summary.json`` and
``curves.png`` (training reward and held-out reward per step) to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time


def evaluate(pipe, rows, counts, seeds, settings, reward, batch_size) -> dict:
    """Judge accuracy (overall = mean of the per-category scores) and mean reward per seed;
    ``counts[i]`` images of ``rows[i]``."""
    import numpy as np
    import torch

    from diffalign import shapes
    from diffalign.shapes.sampling import generate_for_rows

    rep = [r for r, n in zip(rows, counts) for _ in range(n)]
    out = {}
    for seed in seeds:
        pics = generate_for_rows(pipe, rep, seed=seed, batch_size=batch_size, **settings)
        correct = [ok for ok, _ in shapes.judge_batch(pics, rep)]
        pixels = torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            scores = reward(pixels, [r["prompt"] for r in rep], rep)
        out[seed] = {"judge": shapes.summarize(rep, correct), "images_correct": float(np.mean(correct)),
                     "reward": float(scores.mean()), "n": len(rep)}
    return out


def _mean(results: dict, key: str, sub: str | None = None) -> float:
    values = [r[key][sub] if sub else r[key] for r in results.values()]
    return sum(values) / len(values)


def plot_curves(metrics_path: str, out_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffalign.train.metrics import read_metrics

    rows = read_metrics(metrics_path)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    train = [(r["step"], r["reward_mean"]) for r in rows if "reward_mean" in r]
    held = [(r["step"], r["eval_reward_mean"]) for r in rows if "eval_reward_mean" in r]
    if train:
        ax[0].plot(*zip(*train), lw=1)
    ax[0].set_title("training reward (rollouts)")
    if held:
        ax[1].plot(*zip(*held), marker="o")
    ax[1].set_title("held-out reward (deterministic sampler)")
    for a in ax:
        a.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", default=None)
    p.add_argument("--seeds", default="0", help="evaluation seeds (the training seed is the recipe's `seed`)")
    p.add_argument("--images-per-category", type=int, default=64,
                   help="held-out images judged per category (diffalign.demo.held_out_plan)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-all-categories", action="store_true",
                   help="judge all six categories even when the recipe trains on some (`prompts.categories`)")
    args = p.parse_intermixed_args()

    import diffalign  # noqa: F401  (first: makes torchvision importable next to CPU torch)
    import torch
    from diffusers import DiffusionPipeline

    from diffalign import shapes
    from diffalign.config import load_config
    from diffalign.demo import held_out_plan
    from diffalign.rewards import load
    from diffalign.shapes.sampling import sampling_defaults
    from diffalign.train import get_trainer_class
    from diffalign.pipelines.models import resolve_pretrained, use_channels_last
    from diffalign.train_command import recipe_path, trainer_name

    torch.set_num_threads(args.threads)
    t0 = time.time()
    path = recipe_path(args.recipe)
    cls = get_trainer_class(trainer_name(path))
    out = args.out or os.path.join("outputs", "shapes_online", args.recipe)
    cfg = load_config(cls.config_class, path, [f"output_dir={os.path.join(out, 'run')}", *args.overrides])
    model = resolve_pretrained(cfg.model.pretrained)
    settings = sampling_defaults(model)
    rows, counts = held_out_plan(args.images_per_category, seed=0)
    if cfg.prompts.categories and not args.eval_all_categories:
        keep = [i for i, r in enumerate(rows) if r["tag"] in cfg.prompts.categories]
        rows, counts = [rows[i] for i in keep], [counts[i] for i in keep]
    seeds = [int(s) for s in args.seeds.split(",")]
    reward = load(cfg.reward.name, **dict(cfg.reward.options))

    def plain_pipeline():
        pipe = DiffusionPipeline.from_pretrained(model)
        use_channels_last(pipe)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    before = evaluate(plain_pipeline(), rows, counts, seeds, settings, reward, args.batch_size)
    print(f"before [{time.time() - t0:.0f}s]: " + json.dumps({s: (v["judge"]["overall"], v["reward"]) for s, v in before.items()}))
    t1 = time.time()
    result = cls(cfg).train()
    train_seconds = time.time() - t1
    tuned = plain_pipeline()
    tuned.load_lora_weights(result.output_dir)
    after = evaluate(tuned, rows, counts, seeds, settings, reward, args.batch_size)
    print(f"after [{time.time() - t0:.0f}s]: " + json.dumps({s: (v["judge"]["overall"], v["reward"]) for s, v in after.items()}))

    n = before[seeds[0]]["n"]
    p_base = _mean(before, "images_correct")
    summary = {
        "recipe": args.recipe, "overrides": args.overrides, "model": cfg.model.pretrained, "sampling": settings,
        "eval_prompts": len(rows), "eval_images": sum(counts), "seeds": seeds,
        "train_steps": cfg.max_steps, "train_seconds": round(train_seconds, 1), "reward": cfg.reward.name,
        "before": before, "after": after,
        "judge_overall": {"before": _mean(before, "judge", "overall"), "after": _mean(after, "judge", "overall")},
        "images_correct": {"before": p_base, "after": _mean(after, "images_correct"),
                           "binomial_se": math.sqrt(max(p_base * (1 - p_base), 1e-12) / (n * len(seeds)))},
        "reward_mean": {"before": _mean(before, "reward"), "after": _mean(after, "reward")},
        "base_seed_spread": {"judge_overall": [v["judge"]["overall"] for v in before.values()],
                             "reward": [v["reward"] for v in before.values()]},
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    plot_curves(result.metrics_path, os.path.join(out, "curves.png"))
    print(json.dumps({k: summary[k] for k in ("judge_overall", "images_correct", "reward_mean", "base_seed_spread",
                                                "train_seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
