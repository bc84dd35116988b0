"""``diffalign demo [video]``: the ``demo`` command; ``video`` aligns a shipped moving-shapes pipeline with the
temporal judge: ``shapes-cogvideox`` with DDPO (default), D3PO, DenseDPO, plain video DPO or VADER-style reward
gradients, or ``shapes-wan`` with Flow-GRPO (``--method``).

1. the video eval job (temporal judge) on held-out moving-shapes prompts (before);
2. offline methods: preference pairs on TRAIN prompts labelled by the judge: DenseDPO pairs (``--method
   dense_dpo``: two partially noised copies of a rendered clip, labels per segment) or plain video
   Diffusion-DPO pairs (``--method dpo``: two clips from independent noise, whole-clip labels), up to
   ``--pairs`` labelled pairs either way; ``--samples-per-prompt N`` draws N clips (copies) per pair and keeps the
   judge's best against its worst; ``--pairs-from DIR`` trains on an earlier run's pairs instead;
3. a LoRA trained on them with the offline trainer (recipe ``shapes_video_dense_dpo`` or
   ``shapes_video_dpo``), or online (no pairs): ``--method ddpo`` (``shapes_video_ddpo``, the judge as
   reward), ``--method d3po`` (``shapes_video_d3po``, the judge picking the preferred clip of each pair),
   ``--method vader`` (``shapes_video_vader``, the gradient of the differentiable motion reward)
   on shapes-cogvideox, ``--method flow_grpo`` (``shapes_video_flow_grpo``, the judge as reward) on shapes-wan;
4. the LoRA loaded into a plain diffusers pipeline, the same eval job again (after).

Writes to ``OUT`` (default ``outputs/demo-video``): ``summary.json`` (before/after per category),
``report.md`` (the table and links), ``training.png``, ``eval_before/`` and ``eval_after/`` (mp4s,
``results.jsonl``, ``summary.json``, ``report.html`` with playing clips), ``pairs/`` and ``train/``.
Options shared with ``diffalign demo``: ``--out --seed --steps --guidance --batch-size --recipe
--eval-only --threads`` and ``key=value`` recipe overrides after ``video``.
"""
from __future__ import annotations

import argparse
import os
import time

from diffalign import demo

DEFAULT_OUT = os.path.join("outputs", "demo-video")
METHODS = {"dense_dpo": "shapes_video_dense_dpo", "dpo": "shapes_video_dpo", "ddpo": "shapes_video_ddpo",
           "d3po": "shapes_video_d3po", "vader": "shapes_video_vader", "flow_grpo": "shapes_video_flow_grpo"}
"""``--method`` -> its training recipe."""
PIPELINES = {"dense_dpo": "cogvideox", "dpo": "cogvideox", "ddpo": "cogvideox", "d3po": "cogvideox",
             "vader": "cogvideox", "flow_grpo": "wan"}
"""``--method`` -> the shipped moving-shapes pipeline it trains (``shapes-<family>``)."""
ONLINE = ("ddpo", "d3po", "vader", "flow_grpo")
"""Methods trained online on rewards (no preference pairs): the judge (DDPO, Flow-GRPO; D3PO: the judge picks the
preferred clip of each rollout pair) or the differentiable motion reward (``vader``: reward gradient through the
last denoising step, the judge logged beside it)."""
DEFAULT_METHOD = "ddpo"
"""The one measured to raise the held-out judge score on shapes-cogvideox (docs/video.md, "diffalign demo video")."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``diffalign demo``'s options, then the video demo's own (in a group of their own)."""
    demo.add_arguments(p)
    group = p.add_argument_group("diffalign demo video")
    group.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS),
                       help="video: DDPO on shapes-cogvideox with the judge as reward (default: the method that gains "
                            "most per CPU minute, docs/video.md), D3PO on judge-picked rollout pairs, DenseDPO pairs, plain "
                            "video Diffusion-DPO pairs, VADER-style reward gradients, or Flow-GRPO on shapes-wan")
    group.add_argument("--pairs", type=int, default=96, help="video: labelled preference pairs to train on")
    group.add_argument("--pair-margin", type=float, default=0.0,
                       help="video, offline methods: count a preference only where the judge's scores differ by at "
                            "least this much (whole clips for dpo, segments for dense_dpo); 0 keeps every non-tie")
    group.add_argument("--samples-per-prompt", type=int, default=2,
                       help="video, offline methods: clips drawn per pair (dense_dpo: guided copies of one source); "
                            "with more than 2 the judge's best-scored is paired against its worst-scored")
    group.add_argument("--pairs-from", default=None, metavar="DIR",
                       help="video, offline methods: train on the pairs of an earlier run (DIR/pairs.jsonl, e.g. "
                            "OUT/pairs of a previous demo) instead of making new ones; they are read, not changed")
    group.add_argument("--eval-videos-per-category", type=int, default=24,
                       help="video: held-out clips judged per category (one per prompt)")
    group.add_argument("--pipeline", default=None,
                       help="video: a pipeline folder of the method's family to align instead of the shipped one "
                            "(e.g. a checkpoint of `python -m diffalign.shapes.pretrain`)")


def run(args: argparse.Namespace) -> int:
    """``diffalign demo``: the video demo when the first positional argument is ``video``, else the image demo."""
    if args.overrides[:1] != ["video"]:
        return demo.run(args)
    return run_video(args)


def run_video(args: argparse.Namespace) -> int:
    import torch
    from diffusers import DiffusionPipeline

    from diffalign import shapes
    from diffalign.shapes.sampling import sampling_defaults
    from diffalign.shapes.video import VIDEO_CATEGORIES, sample_video_rows

    if args.samples_per_prompt < 2:
        print(f"diffalign demo video: --samples-per-prompt must be at least 2 (a pair), got {args.samples_per_prompt}")
        return 1
    given_pairs = None
    if args.pairs_from:  # checked before anything runs
        if args.method in ONLINE:
            print(f"diffalign demo video: --pairs-from is for the offline methods (dense_dpo, dpo), not {args.method}")
            return 1
        given_pairs = read_pairs(args.pairs_from)
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    t0 = time.time()
    out = args.out or DEFAULT_OUT
    family = PIPELINES[args.method]
    name = f"shapes-{family}"
    if args.pipeline:
        path, name = args.pipeline, os.path.basename(os.path.normpath(args.pipeline))
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            print(f"diffalign demo video: --pipeline {path}: no model_index.json there (not a diffusers pipeline folder)")
            return 1
    else:
        try:
            path = shapes.pretrained_path(family)
        except FileNotFoundError as e:
            print(f"diffalign demo video: {e}\n(see docs/video.md for the training status)")
            return 1
    settings = sampling_defaults(path)
    sampling = {"num_inference_steps": args.steps or settings["num_inference_steps"],
                "guidance_scale": settings["guidance_scale"] if args.guidance is None else args.guidance,
                "height": settings["height"], "width": settings["width"], "num_frames": settings.get("num_frames", 9),
                **{k: settings[k] for k in ("max_sequence_length",) if k in settings}}
    os.makedirs(out, exist_ok=True)
    rows = sample_video_rows(args.eval_videos_per_category, seed=args.seed, split="test")
    base = demo.load_pipeline(DiffusionPipeline, path, channels_last=False)
    print(f"{name}: video eval job on {len(rows)} held-out prompts ({sampling['num_inference_steps']} steps, "
          f"guidance {sampling['guidance_scale']}, {sampling['num_frames']} frames)")
    before = _video_eval(os.path.join(out, "eval_before"), base, rows, sampling, args, name)
    report = {"pipeline": name, "sampling": sampling, "seed": args.seed, "eval_prompts": len(rows),
              "before": video_scores(before)}
    if args.eval_only:
        demo.save_json(os.path.join(out, "summary.json"), report)
        print(demo.format_scores({"base": report["before"]}, VIDEO_CATEGORIES))
        print(f"wrote {out} in {time.time() - t0:.0f}s")
        return 0

    from diffalign.config import load_config
    from diffalign.train_command import recipe_path, trainer_class

    train_dir = os.path.join(out, "train")
    common = [f"output_dir={train_dir}", f"model.pretrained={os.path.abspath(path)}", f"seed={args.seed}", "overwrite=true",
              "progress_bar=false"]
    recipe = recipe_path(args.recipe or METHODS[args.method])
    if args.method in ONLINE:
        # 2-3. online: the judge is the reward; rollouts on TRAIN prompts, the LoRA from the recipe's trainer
        cls = trainer_class(recipe, args.overrides[1:])
        cfg = load_config(cls.config_class, recipe, [*common, *args.overrides[1:]])
        result = cls(cfg).train()
        n_pairs, records, plot_keys = 0, [], ("reward_mean", "loss")
        print(f"trained {args.method} for {cfg.max_steps} iterations [{time.time() - t0:.0f}s]")
    else:
        # 2. judged pairs on training prompts (or an earlier run's, read where they are)
        from diffalign.shapes.video.dense_pairs import labelled_pairs

        if args.pairs_from:
            pairs_dir, records = args.pairs_from, given_pairs
        else:
            pairs_dir = demo.fresh_dir(os.path.join(out, "pairs"))  # the demo owns its folder
            records = make_pairs(args.method, base, pairs_dir, args.pairs, args.seed + 1, sampling, args.batch_size,
                                 margin=args.pair_margin, samples_per_prompt=args.samples_per_prompt)
        n_pairs = labelled_pairs(records)
        source = f"read from {pairs_dir}" if args.pairs_from else "made"
        print(f"{args.method} pairs: {n_pairs} labelled of {len(records)} {source} [{time.time() - t0:.0f}s]")
        if not n_pairs:
            raise RuntimeError("the judge found no preference among the pairs; raise --pairs")

        # 3. the LoRA with the offline trainer
        from diffalign.train.offline import OfflineConfig, OfflinePreferenceTrainer

        overrides = [*common, f"data.path={os.path.join(pairs_dir, 'pairs.jsonl')}", f"data.resolution={sampling['height']}",
                     f"cache.dir={os.path.join(out, 'cache')}", *args.overrides[1:]]
        cfg = load_config(OfflineConfig, recipe, overrides)
        result = OfflinePreferenceTrainer(cfg).train()
        plot_keys = ("loss", "implicit_acc")
        print(f"trained {cfg.method} for {cfg.max_steps} steps [{time.time() - t0:.0f}s]")

    # 4. the LoRA in a plain diffusers pipeline, same held-out prompts and seeds
    tuned = demo.load_pipeline(DiffusionPipeline, path, channels_last=False)
    tuned.load_lora_weights(result.output_dir)
    after = _video_eval(os.path.join(out, "eval_after"), tuned, rows, sampling, args, f"{name}+{args.method}")
    report.update({"after": video_scores(after), "method": args.method, "pairs": n_pairs, "pairs_made": len(records),
                   "pairs_from": os.path.abspath(args.pairs_from) if args.pairs_from else None,
                   "pair_margin": args.pair_margin, "samples_per_prompt": args.samples_per_prompt,
                   "train_steps": cfg.max_steps, "reward": _reward_name(cfg), "seconds": round(time.time() - t0, 1)})
    demo.save_json(os.path.join(out, "summary.json"), report)
    demo.plot_training(result.metrics_path, os.path.join(out, "training.png"), keys=plot_keys)
    table = demo.format_scores({"before": report["before"], "after": report["after"]}, [*VIDEO_CATEGORIES, "score", "accuracy", "travel"])
    _write_report(os.path.join(out, "report.md"), report, table)
    print(table)
    print(f"reports: {out}/eval_before/report.html, {out}/eval_after/report.html")
    print(f"wrote {out}/summary.json, report.md, training.png in {time.time() - t0:.0f}s")
    return 0


def make_pairs(method: str, pipe, out: str, pairs: int, seed: int, sampling: dict, batch_size: int,
               margin: float = 0.0, samples_per_prompt: int = 2) -> list[dict]:
    """``pairs`` labelled pairs on TRAIN prompts (balanced over the categories) for ``method``; ``margin``: the
    least score difference that labels a clip (dpo) or segment (dense_dpo); ``samples_per_prompt``: clips drawn per
    pair (best against worst when more than 2)."""
    from diffalign.shapes.video import make_dense_pairs, make_sampled_pairs, sample_video_rows

    # far more than needed (three times that with a margin, which rejects most pairs): stops at `pairs`
    rows = sample_video_rows(max(4, pairs) * (3 if margin > 0 else 1), seed=seed, split="train")
    common = dict(num_frames=sampling["num_frames"], size=sampling["height"], max_pairs=pairs, seed=seed, margin=margin,
                  samples_per_prompt=samples_per_prompt,
                  num_inference_steps=sampling["num_inference_steps"], guidance_scale=sampling["guidance_scale"],
                  **{k: sampling[k] for k in ("max_sequence_length",) if k in sampling})
    if method == "dense_dpo":
        return make_dense_pairs(pipe, rows, out, **common)
    return make_sampled_pairs(pipe, rows, out, batch_size=batch_size, **common)


def read_pairs(folder: str) -> list[dict]:
    """The records of ``folder/pairs.jsonl`` (``--pairs-from``), read by the data layer's jsonl source; a missing
    file, a bad line or a row that is not a pair record is one error naming the folder and the line."""
    from diffalign.data.errors import DatasetError
    from diffalign.data.sources.jsonl import JsonlSource

    path = os.path.join(folder, "pairs.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--pairs-from {folder}: no pairs.jsonl there (the pairs/ folder of an earlier demo)")
    try:
        source = JsonlSource(path)
    except DatasetError as e:
        raise DatasetError(f"--pairs-from {folder}: {e}") from None
    for i, row in enumerate(source.rows):
        if "segment_labels" not in row:
            raise DatasetError(f"--pairs-from {folder}: {source.where(i)}: not a pair record of `diffalign demo video` "
                               "(no segment_labels)")
    return source.rows


def video_scores(summary: dict) -> dict:
    """Per-category mean judge score, overall ``score``, ``accuracy`` and ``travel`` (the judge's
    mean ``motion`` figure: how far objects move; plain video DPO is known to lower it)."""
    return {**{tag: c["score"] for tag, c in summary["categories"].items()}, "score": summary["score"],
            "accuracy": summary["accuracy"], "travel": summary["temporal"].get("motion", 0.0)}


def _video_eval(out: str, pipe, rows, sampling: dict, args, name: str) -> dict:
    from diffalign.eval.video import job

    return job.run(demo.fresh_dir(out), rows, pipe, seed=args.seed, batch_size=args.batch_size, sampling=sampling,
                   info={"pipeline": name})


def _reward_name(cfg) -> str:
    """The trained-on reward as written in a recipe (name and options), or "" for the offline methods."""
    reward = getattr(cfg, "reward", None)
    if reward is None:
        return ""
    options = ", ".join(f"{k}={v}" for k, v in sorted(reward.options.items()))
    return f"{reward.name}({options})" if options else reward.name


def _write_report(path: str, report: dict, table: str) -> None:
    if report["method"] == "vader":
        trained = f"{report['train_steps']} updates along the reward's gradient ({report['reward']})"
    elif report["method"] == "d3po":
        trained = f"{report['train_steps']} iterations, the judge picking the preferred clip of each pair"
    elif report["method"] in ONLINE:
        trained = f"{report['train_steps']} iterations with the judge as reward"
    else:
        trained = f"{report['pairs']} labelled pairs, {report['train_steps']} steps"
    lines = [f"# diffalign demo video: {report['method']} on {report['pipeline']}", "",
             f"{trained}, {report['seconds']:.0f} s; held-out "
             f"mean judge score per category (one clip per prompt, {report['eval_prompts']} prompts).", "",
             "```", table, "```", "",
             "Clips: [before](eval_before/report.html), [after](eval_after/report.html); training: training.png."]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
