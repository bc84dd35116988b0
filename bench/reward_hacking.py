"""Reward hacking on the shapes world, and the guards against it (docs/online.md, "Reward hacking").

    python bench/reward_hacking.py [--seeds 0,1,2] [--steps 20] [--eval-every 10] [--configs unguarded,guarded]
                                   [--set CONFIG:key=value ...] [--eval-prompts N] [--proxy-half-area A]
                                   [--proxy-judge-weight J] [--proxy-area-weight W] [--jobs N]
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
- ``guarded``: the proxy alone with the two guards of the Flow-GRPO loss: adaptive KL to the
  reference (``GUARDS``: start coefficient, target KL, horizon) and GRPO-Guard's RatioNorm. The
  judge is never seen in training;
- ``guarded+judge`` (not run by default): the earlier guarded run, adaptive KL (0.01 start, target
  0.002) and RatioNorm with the judge mixed into the reward (``weighted_sum`` of the proxy and
  ``shapes``, weight 1 each) and per-reward normalised advantages. It trains on the gold signal (on
  training prompts); its held-out reward is the sum, so its proxy curve is
  ``eval_reward_mean - gold_reward_mean``.

``--set CONFIG:key=value`` (repeatable) appends a ``diffalign train`` override to one configuration's
runs (after its own keys, so it wins), e.g. the measured guarded setting ``--set guarded:loss.clip_range=1e-4``
(docs/online.md); ``--eval-prompts N`` sets the held-out image count (default 60); ``--proxy-half-area A``
the proxy's ``half_area`` in every configuration (default 0.25; smaller values pay less for painted area).
``--proxy-judge-weight J`` (default 0) gives the proxy of ``unguarded`` and ``guarded`` a gold component, as a
learned reward model shares much of a gold one: a ``weighted_sum`` of ``W`` x the colour-area score
(``--proxy-area-weight W``, default 1) and ``J`` x the judge's partial credit (``shapes`` with ``partial: true``:
the mean over the row's checks of how far each holds), advantages normalised per reward. The gold score stays the
strict 0/1 judge; with a large ``W`` the area term can be pushed up while the shapes the judge checks are lost.

Each run is one single-threaded process (``OMP_NUM_THREADS=1``); ``--jobs N`` runs N of them at once
(seeds outermost, so a cut sweep has every configuration of the first seeds). Writes per run
``OUT/<config>-s<seed>/logs/metrics.jsonl``, its wall time ``OUT/<config>-s<seed>.seconds`` and its own CPU
seconds ``OUT/<config>-s<seed>.cpu``, then ``OUT/table.md`` (start / end / change of the proxy and the
gold score per run, whether the run shows the claim "gold end >= start and proxy end > start", mean and
sd over seeds) and
the curves (``--figure``: per-seed lines, the mean over seeds and its min-max band).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

BASE = ["prompts.categories=[colors,color_attr]", "optim.lr=3e-3", "loss.clip_range=0.01",
        "evaluation.gold_reward.name=shapes", "evaluation.num_prompts=60", "evaluation.batch_size=30",
        "sample_grid_every=0", "checkpointing_steps=0"]
#: the proxy: shapes_color with the "requested colour present" term saturating only at a quarter of
#: the image (half_area 0.25 instead of 0.01), so painting large areas pays, which the judge's shape and
#: count checks do not reward
PROXY = "shapes_color"
HALF_AREA = 0.25
PROXY_OPTIONS = f"{{half_area: {HALF_AREA}}}"
PROXY_ONLY = [f"reward.name={PROXY}", f"reward.options={PROXY_OPTIONS}"]
#: the guards (docs/online.md, "Reward hacking"): adaptive KL and RatioNorm
GUARDS = ["loss.beta=0.05", "loss.target_kl=0.0005", "loss.kl_horizon=3", "loss.ratio_norm=true"]
CONFIGS = {
    "unguarded": [*PROXY_ONLY, "loss.beta=0"],
    "guarded": [*PROXY_ONLY, *GUARDS],
    "guarded+judge": ["reward.name=weighted_sum",
                      f"reward.options={{rewards: {{proxy: {{reward: {PROXY}, weight: 1.0, half_area: 0.25}}, shapes: 1.0}}}}",
                      "advantages.per_reward=true", "loss.beta=0.01", "loss.target_kl=0.002", "loss.ratio_norm=true"],
}


def mixture_proxy(half_area: float, area_weight: float, judge_weight: float) -> list[str]:
    """The reward keys of a proxy with a gold component: a ``weighted_sum`` of the colour-area score
    (``area_weight``) and the judge's partial credit (``judge_weight``: the mean over the row's checks of
    how far each holds, 1 for an image the judge calls correct), advantages normalised per reward."""
    return ["reward.name=weighted_sum",
            f"reward.options={{rewards: {{area: {{reward: {PROXY}, weight: {area_weight}, half_area: {half_area}}}, "
            f"partial: {{reward: shapes, weight: {judge_weight}, partial: true}}}}}}",
            "advantages.per_reward=true"]


def config_keys(name: str, half_area: float = HALF_AREA, judge_weight: float = 0.0, area_weight: float = 1.0) -> list[str]:
    """The ``diffalign train`` overrides of one configuration, with the proxy's ``half_area``; with
    ``judge_weight > 0`` the proxy of ``unguarded`` and ``guarded`` is :func:`mixture_proxy`."""
    if half_area <= 0:
        raise ValueError(f"the proxy's half_area must be positive, got {half_area}")
    if judge_weight < 0 or area_weight <= 0:
        raise ValueError(f"the proxy's weights must be judge >= 0 and area > 0, got {judge_weight} and {area_weight}")
    keys = [k.replace(f"half_area: {HALF_AREA}", f"half_area: {half_area}") for k in CONFIGS[name]]
    if judge_weight and name != "guarded+judge":
        keys = [*mixture_proxy(half_area, area_weight, judge_weight), *[k for k in keys if not k.startswith("reward.")]]
    return keys


def command(name: str, seed: int, steps: int, every: int, out: str, overrides: dict[str, list[str]] | None = None,
            eval_prompts: int | None = None, half_area: float = HALF_AREA, judge_weight: float = 0.0,
            area_weight: float = 1.0) -> list[str]:
    """The ``diffalign train`` command line of one run: the configuration's keys (the proxy with ``half_area``),
    then ``overrides[name]`` (``key=value`` items given with ``--set NAME:key=value``; later keys win) and the
    held-out image count."""
    extra = ([f"evaluation.num_prompts={eval_prompts}"] if eval_prompts else []) + list((overrides or {}).get(name, []))
    return [sys.executable, "-m", "diffalign", "train", "shapes_flow_grpo", f"seed={seed}",
            f"output_dir={os.path.join(out, f'{name}-s{seed}')}", f"max_steps={steps}",
            f"evaluation.every_steps={every}", "progress_bar=false", *BASE,
            *config_keys(name, half_area, judge_weight, area_weight), *extra]


def parse_overrides(items: list[str], configs=CONFIGS) -> dict[str, list[str]]:
    """``["guarded:loss.clip_range=1e-4", ...]`` -> ``{"guarded": ["loss.clip_range=1e-4"], ...}`` (an override of a
    configuration not run this time is kept and unused, so one command line serves every subset of ``--configs``)."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, kv = item.partition(":")
        if not sep or "=" not in kv or name not in configs:
            raise ValueError(f"--set {item!r}: expected CONFIG:key=value with CONFIG one of {','.join(configs)}")
        out.setdefault(name, []).append(kv)
    return out


def run(name: str, seed: int, steps: int, every: int, out: str, overrides: dict[str, list[str]] | None = None,
        eval_prompts: int | None = None, half_area: float = HALF_AREA, judge_weight: float = 0.0,
        area_weight: float = 1.0) -> float:
    cmd = command(name, seed, steps, every, out, overrides, eval_prompts, half_area, judge_weight, area_weight)
    print("+", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(os.path.join(out, f"{name}-s{seed}.log"), "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time (other runs go on beside it)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    seconds = time.time() - t0
    with open(os.path.join(out, f"{name}-s{seed}.seconds"), "w") as f:
        f.write(f"{seconds:.0f}\n")
    with open(os.path.join(out, f"{name}-s{seed}.cpu"), "w") as f:
        f.write(f"{usage.ru_utime + usage.ru_stime:.1f}\n")
    print(f"{name} seed {seed}: {seconds / 60:.1f} min, {usage.ru_utime + usage.ru_stime:.0f} CPU s", flush=True)
    return seconds


def judge_in_reward(name: str) -> bool:
    return "shapes: 1.0}" in " ".join(CONFIGS[name])


def curves(out: str, name: str, seed: int) -> list[tuple[int, float, float]]:
    """(iteration, held-out proxy, held-out gold) at every evaluation of a run ([] before it started)."""
    path = os.path.join(out, f"{name}-s{seed}", "logs", "metrics.jsonl")
    if not os.path.exists(path):
        return []
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    # guarded+judge trains on proxy + judge (weights 1, 1): its held-out reward is the sum, and the gold
    # score is the judge on the same images, so the proxy alone is their difference
    mixed = judge_in_reward(name)
    return [(r["step"], r["eval_reward_mean"] - (r["gold_reward_mean"] if mixed else 0.0), r["gold_reward_mean"])
            for r in rows if "gold_reward_mean" in r]


def _mean_sd(values: list[float], signed: bool = False, digits: int = 3) -> str:
    return f"{statistics.fmean(values):{'+' if signed else ''}.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _read(path: str) -> float | None:
    return float(open(path).read()) if os.path.exists(path) else None


def proxy_label(half_area: float = HALF_AREA, judge_weight: float = 0.0, area_weight: float = 1.0) -> str:
    """The proxy's name in figures."""
    area = f"{PROXY}, half_area {half_area:g}"
    if not judge_weight:
        return area
    return f"{area_weight:g} x {area} + {judge_weight:g} x judge partial credit"


def report(out: str, seeds: list[int], figure: str | None, configs: list[str] | None = None,
           label: str | None = None) -> str:
    """Write ``OUT/table.md`` (and ``figure``) from the runs found; return the table. Per run: the held-out
    proxy (4 decimals: its changes here are a few thousandths) and gold at the first and last evaluation, their changes, the lowest gold, whether the run
    shows the claim (gold end >= gold start and proxy end > proxy start), wall minutes and CPU seconds."""
    lines = ["| config | seed | proxy start | proxy end | proxy Δ | gold start | gold end | gold Δ | gold min | "
             "gold ≥ start and proxy up | wall min | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    data = {}
    for name in configs or CONFIGS:
        runs = {s: c for s in seeds if (c := curves(out, name, s))}
        if not runs:
            continue
        data[name] = runs
        for s, c in runs.items():
            wall, cpu = _read(os.path.join(out, f"{name}-s{s}.seconds")), _read(os.path.join(out, f"{name}-s{s}.cpu"))
            (_, p0, g0), (_, p1, g1) = c[0], c[-1]
            shown = "yes" if g1 >= g0 and p1 > p0 else "no"
            lines.append(f"| {name} | {s} | {p0:.4f} | {p1:.4f} | {p1 - p0:+.4f} | {g0:.3f} | {g1:.3f} | {g1 - g0:+.3f} | "
                         f"{min(p[2] for p in c):.3f} | {shown} | {'-' if wall is None else f'{wall / 60:.0f}'} | "
                         f"{'-' if cpu is None else f'{cpu:.0f}'} |")
        finished = [c for c in runs.values() if c[-1][0] == max(cc[-1][0] for cc in runs.values())]
        if len(finished) > 1:
            cols = [[c[0][1] for c in finished], [c[-1][1] for c in finished], [c[-1][1] - c[0][1] for c in finished],
                    [c[0][2] for c in finished], [c[-1][2] for c in finished], [c[-1][2] - c[0][2] for c in finished],
                    [min(p[2] for p in c) for c in finished]]
            shown = sum(c[-1][2] >= c[0][2] and c[-1][1] > c[0][1] for c in finished)
            lines.append(f"| {name} | mean ± sd of {len(finished)} | " + " | ".join(_mean_sd(v, k in (2, 5), 4 if k < 3 else 3) for k, v in enumerate(cols))
                         + f" | {shown} of {len(finished)} | | |")
    table = "\n".join(lines)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    if figure and data:
        plot(data, figure, label or proxy_label())
    return table


def plot(data: dict[str, dict[int, list[tuple[int, float, float]]]], figure: str, label: str) -> None:
    """Held-out proxy and gold against iterations: thin lines per seed, the mean over the seeds that
    reached each evaluation (thick) and their min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for k, (name, runs) in enumerate(data.items()):
        colour = f"C{k}"
        for c in runs.values():
            for ax, j in zip(axes, (1, 2)):
                ax.plot([p[0] for p in c], [p[j] for p in c], color=colour, lw=0.7, alpha=0.35)
        steps = sorted({p[0] for c in runs.values() for p in c})
        for ax, j in zip(axes, (1, 2)):
            at = [[p[j] for c in runs.values() for p in c if p[0] == s] for s in steps]
            ax.fill_between(steps, [min(v) for v in at], [max(v) for v in at], color=colour, alpha=0.15, lw=0)
            ax.plot(steps, [statistics.fmean(v) for v in at], color=colour, lw=2, marker="o", ms=4,
                    label=f"{name} (mean of {len(runs)} seed{'s' if len(runs) > 1 else ''}, min-max band)")
    for ax, j in zip(axes, (1, 2)):  # the untrained model's score (the same for every run and seed)
        ax.axhline(statistics.fmean(c[0][j] for runs in data.values() for c in runs.values()), color="grey", lw=0.8, ls="--")
    axes[0].set_title(f"proxy: {label} (held-out; dashed = start)", fontsize=8 if len(label) > 40 else None)
    axes[1].set_title("gold: shapes judge (held-out; dashed = start)")
    for ax in axes:
        ax.set_xlabel("iteration")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(figure) or ".", exist_ok=True)
    fig.savefig(figure, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--configs", default="unguarded,guarded")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (each one single-threaded process)")
    p.add_argument("--out", default="outputs/reward_hacking")
    p.add_argument("--figure", default="docs/img/reward_hacking.png")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="CONFIG:KEY=VALUE",
                   help="a config override for one configuration's runs (repeatable), e.g. guarded:loss.clip_range=1e-4")
    p.add_argument("--eval-prompts", type=int, default=None, help="held-out images per evaluation (default 60)")
    p.add_argument("--proxy-half-area", type=float, default=HALF_AREA,
                   help=f"the proxy's half_area (default {HALF_AREA}: painting a quarter of the image pays)")
    p.add_argument("--proxy-judge-weight", type=float, default=0.0,
                   help="weight of the judge's partial credit in the proxy (default 0: the colour-area score alone); "
                        "above 0 the proxy is a weighted_sum of both, advantages normalised per reward")
    p.add_argument("--proxy-area-weight", type=float, default=1.0,
                   help="weight of the colour-area score in that weighted_sum (default 1)")
    args = p.parse_args(argv)
    if args.proxy_half_area <= 0:
        p.error(f"--proxy-half-area must be positive, got {args.proxy_half_area}")
    if args.proxy_judge_weight < 0 or args.proxy_area_weight <= 0:
        p.error(f"--proxy-judge-weight must be >= 0 and --proxy-area-weight > 0, got {args.proxy_judge_weight} "
                f"and {args.proxy_area_weight}")
    proxy = dict(half_area=args.proxy_half_area, judge_weight=args.proxy_judge_weight, area_weight=args.proxy_area_weight)
    label = proxy_label(**proxy)
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown --configs {','.join(unknown)}; choose from {','.join(CONFIGS)}")
    try:
        overrides = parse_overrides(args.set)
    except ValueError as e:
        p.error(str(e))
    os.makedirs(args.out, exist_ok=True)
    if not args.plot_only:
        evals = args.steps // args.eval_every + 1
        todo = [(n, s) for s in seeds for n in configs if len(curves(args.out, n, s)) < evals]  # skip finished runs
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for _ in pool.map(lambda job: run(job[0], job[1], args.steps, args.eval_every, args.out, overrides,
                                                   args.eval_prompts, **proxy), todo):
                report(args.out, seeds, None, configs, label)
    print(report(args.out, seeds, args.figure, configs, label))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
