"""`diffalign demo video`: DDPO (the default), DenseDPO or plain video DPO on the shipped shapes-cogvideox pipeline,
Flow-GRPO on shapes-wan.

The plumbing is tested here on a tiny pipeline trained for two steps; the gains themselves (full
runs over seeds) are measured and recorded in docs/video.md."""
from __future__ import annotations

import json
import os

import pytest

from diffalign import demo, demo_video
from diffalign.cli import main
from diffalign.shapes.video import VIDEO_CATEGORIES


def test_demo_video_is_dispatched_with_its_options(monkeypatch):
    seen = []
    monkeypatch.setattr(demo_video, "run_video", lambda args: seen.append(args) or 0)
    assert main(["demo", "--method", "dpo", "--pairs", "3", "--eval-videos-per-category", "2", "video", "max_steps=2"]) == 0
    (args,) = seen
    assert (args.method, args.pairs, args.eval_videos_per_category) == ("dpo", 3, 2)
    assert args.overrides == ["video", "max_steps=2"] and args.out is None and args.recipe is None
    assert demo_video.METHODS == {"dense_dpo": "shapes_video_dense_dpo", "dpo": "shapes_video_dpo",
                                  "ddpo": "shapes_video_ddpo", "d3po": "shapes_video_d3po", "vader": "shapes_video_vader",
                                  "flow_grpo": "shapes_video_flow_grpo"}
    assert demo_video.PIPELINES["flow_grpo"] == "wan" and demo_video.PIPELINES["dense_dpo"] == "cogvideox"
    assert demo_video.PIPELINES["vader"] == "cogvideox" and "vader" in demo_video.ONLINE
    assert demo_video.PIPELINES["d3po"] == "cogvideox" and "d3po" in demo_video.ONLINE
    # the default is the method measured to gain on shapes-cogvideox (DDPO, docs/video.md)
    assert main(["demo", "video"]) == 0 and seen[-1].method == "ddpo"
    assert seen[-1].pair_margin == 0.0
    assert main(["demo", "--method", "dpo", "--pair-margin", "0.2", "video"]) == 0 and seen[-1].pair_margin == 0.2
    # the margin reaches the pair maker, with three times the rows to draw from
    from diffalign.shapes import video as shapes_video

    calls = []
    for name in ("make_sampled_pairs", "make_dense_pairs"):
        monkeypatch.setattr(shapes_video, name, lambda pipe, rows, out, _name=name, **kw: calls.append((_name, len(rows), kw)) or [])
    sampling = {"num_frames": 9, "height": 32, "num_inference_steps": 3, "guidance_scale": 8.0}
    demo_video.make_pairs("dpo", None, "unused", 6, 1, sampling, 4, margin=0.2)
    demo_video.make_pairs("dense_dpo", None, "unused", 6, 1, sampling, 4)
    assert [(c[0], c[1], c[2]["margin"], c[2]["max_pairs"]) for c in calls] == [
        ("make_sampled_pairs", 6 * 3 * len(VIDEO_CATEGORIES), 0.2, 6), ("make_dense_pairs", 6 * len(VIDEO_CATEGORIES), 0.0, 6)]
    assert calls[0][2]["samples_per_prompt"] == 2  # plain DPO's two clips from independent noise by default
    # best-vs-worst of N reaches the plain-DPO pair maker
    assert main(["demo", "--method", "dpo", "--samples-per-prompt", "8", "video"]) == 0 and seen[-1].samples_per_prompt == 8
    demo_video.make_pairs("dpo", None, "unused", 6, 1, sampling, 8, samples_per_prompt=8)
    assert calls[-1][0] == "make_sampled_pairs" and calls[-1][2]["samples_per_prompt"] == 8
    demo_video.make_pairs("dense_dpo", None, "unused", 6, 1, sampling, 8, samples_per_prompt=4)
    assert calls[-1][0] == "make_dense_pairs" and calls[-1][2]["samples_per_prompt"] == 4
    # without `video` the image demo runs
    monkeypatch.setattr(demo, "run", lambda args: seen.append(("image", args.overrides)) or 0)
    assert main(["demo", "--eval-only", "max_steps=2"]) == 0 and seen[-1] == ("image", ["max_steps=2"])


def test_pairs_from_and_samples_per_prompt_are_checked_before_anything_runs(tmp_path, monkeypatch, capsys):
    from diffalign import shapes

    monkeypatch.setattr(shapes, "pretrained_path", lambda family: pytest.fail("ran past a bad --pairs-from"))
    assert main(["demo", "--method", "ddpo", "--pairs-from", str(tmp_path), "video"]) == 1
    assert "--pairs-from is for the offline methods" in capsys.readouterr().out
    assert main(["demo", "--method", "dpo", "--samples-per-prompt", "1", "video"]) == 1
    assert "--samples-per-prompt must be at least 2 (a pair), got 1" in capsys.readouterr().out
    assert main(["demo", "--method", "dpo", "--pairs-from", str(tmp_path / "nowhere"), "video"]) == 1
    assert "no pairs.jsonl there" in capsys.readouterr().err
    (tmp_path / "pairs.jsonl").write_text('{"caption": "a", "segment_labels": [1]}\n\n{"caption": \n')
    assert main(["demo", "--method", "dpo", "--pairs-from", str(tmp_path), "video"]) == 1
    assert f"--pairs-from {tmp_path}: pairs.jsonl line 3: invalid JSON" in capsys.readouterr().err
    (tmp_path / "pairs.jsonl").write_text('{"caption": "a"}\n')
    assert main(["demo", "--method", "dense_dpo", "--pairs-from", str(tmp_path), "video"]) == 1
    assert "pairs.jsonl row 0 (line 1): not a pair record" in capsys.readouterr().err


def test_video_scores_and_table():
    summary = {"categories": {"motion": {"score": 0.5, "accuracy": 0.25, "n": 4}, "passing": {"score": 0.2, "accuracy": 0.0, "n": 4}},
               "score": 0.35, "accuracy": 0.125, "temporal": {"motion": 0.3, "background_flicker": 0.01}}
    scores = demo_video.video_scores(summary)
    assert scores == {"motion": 0.5, "passing": 0.2, "score": 0.35, "accuracy": 0.125, "travel": 0.3}
    table = demo.format_scores({"before": scores, "after": {**scores, "passing": 0.45}}, ["motion", "passing", "score"])
    assert table.splitlines()[2].split() == ["passing", "0.200", "0.450", "+0.250"]
    assert len(table.splitlines()) == 4


@pytest.mark.slow  # imports the offline trainer
def test_both_video_recipes_load_with_the_demo_overrides(tmp_path):
    from diffalign.config import load_config
    from diffalign.train.offline import OfflineConfig
    from diffalign.train_command import recipe_path

    dense, dpo = (load_config(OfflineConfig, recipe_path(demo_video.METHODS[m]), [f"data.path={tmp_path}/pairs.jsonl"])
                  for m in ("dense_dpo", "dpo"))
    assert (dense.method, dense.data.kind, dpo.method, dpo.data.kind, dpo.data.media) == (
        "dense_dpo", "video_pairs", "diffusion_dpo", "pairs", "video")
    assert dpo.data.columns["label_0"] == "label_0"
    # the comparison is at equal settings: only the method and the data differ
    assert (dense.max_steps, dense.batch_size, dense.loss["beta"], dense.lora.rank, dense.optim.lr) == (
        dpo.max_steps, dpo.batch_size, dpo.loss["beta"], dpo.lora.rank, dpo.optim.lr)


@pytest.fixture(scope="module")
def tiny_video_pipeline(tmp_path_factory):
    """A random-init tiny shapes-cogvideox folder (the pretraining script's --tiny architecture)."""
    from diffalign.shapes.pretrain import build_pipeline
    from diffalign.shapes.pretraining.loop import save_fp16

    out = str(tmp_path_factory.mktemp("pretrained") / "shapes-cogvideox")
    settings = {"num_inference_steps": 3, "guidance_scale": 5.0, "height": 32, "width": 32, "num_frames": 9}
    return save_fp16(build_pipeline("cogvideox", seed=0, tiny=True), out, extra_json={"diffalign_sampling.json": settings})


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dense_dpo", "dpo"])
def test_demo_video_end_to_end_on_a_tiny_pipeline(tmp_path, monkeypatch, tiny_video_pipeline, method):
    from diffalign import shapes

    if method == "dpo":  # --pipeline: a folder of the family instead of the shipped one
        monkeypatch.setattr(shapes, "pretrained_path", lambda family: pytest.fail("--pipeline ignored"))
        where = ["--pipeline", tiny_video_pipeline]
    else:
        monkeypatch.setattr(shapes, "pretrained_path", lambda family: tiny_video_pipeline)
        where = []
    out = tmp_path / "demo-video"
    code = main(["demo", "--out", str(out), "--threads", "1", "--batch-size", "4", "--eval-videos-per-category", "1",
                 "--pairs", "2", "--method", method, *where, "video", "max_steps=2", "batch_size=2"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pipeline"] == "shapes-cogvideox"
    # the trainer loads the very folder evaluated (a relative "shapes-cogvideox" would name the shipped one)
    assert f"pretrained: {os.path.abspath(tiny_video_pipeline)}" in (out / "train" / "config.yaml").read_text()
    keys = {*VIDEO_CATEGORIES, "score", "accuracy", "travel"}
    assert set(summary["before"]) == set(summary["after"]) == keys
    assert summary["method"] == method and summary["train_steps"] == 2 and 1 <= summary["pairs"] <= summary["pairs_made"]
    assert summary["sampling"]["num_inference_steps"] == 3 and summary["sampling"]["num_frames"] == 9
    for stage in ("eval_before", "eval_after"):
        results = [json.loads(line) for line in open(out / stage / "results.jsonl")]
        assert [r["tag"] for r in results] == list(VIDEO_CATEGORIES)  # one held-out prompt per category
        assert all(os.path.exists(out / stage / r["filename"]) for r in results)
        assert (out / stage / "report.html").stat().st_size > 0
    assert (out / "train" / "pytorch_lora_weights.safetensors").exists()
    pairs = [json.loads(line) for line in open(out / "pairs" / "pairs.jsonl")]
    assert all(os.path.exists(out / "pairs" / p["video_0"]) for p in pairs)
    assert "travel" in (out / "report.md").read_text() and (out / "training.png").stat().st_size > 0
    if method == "dpo":  # --pairs-from: train again on the same pairs, read where they are and left unchanged
        before = (out / "pairs" / "pairs.jsonl").read_bytes()
        again = tmp_path / "again"
        code = main(["demo", "--out", str(again), "--threads", "1", "--batch-size", "4", "--eval-videos-per-category", "1",
                     "--method", method, *where, "--pairs-from", str(out / "pairs"), "video", "max_steps=1", "batch_size=2"])
        assert code == 0
        second = json.loads((again / "summary.json").read_text())
        assert second["pairs_from"] == str(out / "pairs") and second["pairs"] == summary["pairs"]
        assert second["before"] == summary["before"] and not (again / "pairs").exists()
        assert (out / "pairs" / "pairs.jsonl").read_bytes() == before
        assert str(out / "pairs" / "pairs.jsonl") in (again / "train" / "config.yaml").read_text()


@pytest.fixture(scope="module")
def tiny_wan_pipeline(tmp_path_factory):
    """A random-init tiny shapes-wan folder (the pretraining script's --tiny architecture)."""
    from diffalign.shapes.pretrain import build_pipeline
    from diffalign.shapes.pretraining.loop import save_fp16

    out = str(tmp_path_factory.mktemp("pretrained") / "shapes-wan")
    settings = {"num_inference_steps": 3, "guidance_scale": 5.0, "height": 32, "width": 32, "num_frames": 9,
                "max_sequence_length": 32}
    return save_fp16(build_pipeline("wan", seed=0, tiny=True), out, extra_json={"diffalign_sampling.json": settings})


@pytest.mark.slow
def test_demo_video_flow_grpo_trains_shapes_wan_online(tmp_path, monkeypatch, tiny_wan_pipeline, tiny_video_pipeline):
    """``--method flow_grpo`` trains the shapes-wan folder (not shapes-cogvideox) with the judge as reward, no pairs."""
    from diffalign import shapes

    asked = []
    monkeypatch.setattr(shapes, "pretrained_path",
                        lambda family: asked.append(family) or {"wan": tiny_wan_pipeline, "cogvideox": tiny_video_pipeline}[family])
    out = tmp_path / "demo-video"
    code = main(["demo", "--out", str(out), "--threads", "1", "--batch-size", "4", "--eval-videos-per-category", "1",
                 "--method", "flow_grpo", "video", "max_steps=2", "sampling.batch_size=4", "sampling.num_batches=1",
                 "sampling.num_inference_steps=3", "evaluation.every_steps=0"])
    assert code == 0 and asked == ["wan"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pipeline"] == "shapes-wan" and summary["method"] == "flow_grpo" and summary["train_steps"] == 2
    assert set(summary["before"]) == set(summary["after"]) == {*VIDEO_CATEGORIES, "score", "accuracy", "travel"}
    assert not (out / "pairs").exists() and (out / "train" / "pytorch_lora_weights.safetensors").exists()
    results = [json.loads(line) for line in open(out / "eval_after" / "results.jsonl")]
    assert [r["tag"] for r in results] == list(VIDEO_CATEGORIES)
    assert "iterations with the judge as reward" in (out / "report.md").read_text()
    assert (out / "training.png").stat().st_size > 0


def test_demo_video_pipeline_option_needs_a_pipeline_folder(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "out"), "--pipeline", str(tmp_path), "video"])
    assert code == 1
    assert f"--pipeline {tmp_path}: no model_index.json" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_demo_video_default_is_ddpo_on_shapes_cogvideox(tmp_path, monkeypatch, tiny_video_pipeline):
    """No ``--method``: DDPO on the shapes-cogvideox folder with the judge as reward, held-out before and after."""
    from diffalign import shapes

    asked = []
    monkeypatch.setattr(shapes, "pretrained_path", lambda family: asked.append(family) or tiny_video_pipeline)
    out = tmp_path / "demo-video"
    code = main(["demo", "--out", str(out), "--threads", "1", "--eval-videos-per-category", "1", "video",
                 "max_steps=1", "batch_size=4", "sampling.batch_size=4", "sampling.num_batches=1",
                 "sampling.num_inference_steps=3", "evaluation.every_steps=0", "tracker_min_count=2",
                 "tracker_buffer_size=4"])
    assert code == 0 and asked == ["cogvideox"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "ddpo" and summary["pipeline"] == "shapes-cogvideox" and summary["train_steps"] == 1
    assert summary["before"]["score"] >= 0 and set(summary["after"]) == {*VIDEO_CATEGORIES, "score", "accuracy", "travel"}
    assert not (out / "pairs").exists() and (out / "train" / "pytorch_lora_weights.safetensors").exists()
    records = [json.loads(line) for line in open(out / "train" / "logs" / "metrics.jsonl")]
    assert len(records) == 1 and "reward_mean" in records[0]  # one iteration, no evaluation


@pytest.mark.slow
def test_demo_video_vader_trains_on_the_reward_gradient(tmp_path, monkeypatch, tiny_video_pipeline):
    """``--method vader``: the differentiable motion reward's gradient (recipe shapes_video_vader) on the
    shapes-cogvideox folder, no pairs; the reward and its options are in the summary and the report."""
    from diffalign import shapes

    monkeypatch.setattr(shapes, "pretrained_path", lambda family: tiny_video_pipeline)
    out = tmp_path / "demo-video"
    code = main(["demo", "--out", str(out), "--threads", "1", "--eval-videos-per-category", "1", "--method", "vader",
                 "video", "max_steps=1", "gradient_accumulation_steps=1", "sampling.batch_size=2",
                 "sampling.num_inference_steps=3", "evaluation.every_steps=0"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "vader" and summary["train_steps"] == 1
    assert summary["reward"] == "shapes_video_motion(shape_weight=2.0)"
    records = [json.loads(line) for line in open(out / "train" / "logs" / "metrics.jsonl")]
    assert len(records) == 1 and records[0]["grad_norm"] > 0
    assert "1 updates along the reward's gradient (shapes_video_motion(shape_weight=2.0))" in (out / "report.md").read_text()


@pytest.mark.slow
def test_demo_video_d3po_trains_on_judge_picked_pairs(tmp_path, monkeypatch, tiny_video_pipeline):
    """``--method d3po``: rollout pairs sharing prompt and initial noise, the judge picking the preferred clip
    (recipe shapes_video_d3po), on the shapes-cogvideox folder; no pairs folder, the LoRA evaluated after."""
    from diffalign import shapes

    monkeypatch.setattr(shapes, "pretrained_path", lambda family: tiny_video_pipeline)
    out = tmp_path / "demo-video"
    code = main(["demo", "--out", str(out), "--threads", "1", "--eval-videos-per-category", "1", "--method", "d3po",
                 "video", "max_steps=1", "batch_size=2", "sampling.batch_size=4", "sampling.num_inference_steps=3",
                 "evaluation.every_steps=0"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "d3po" and summary["train_steps"] == 1 and summary["reward"].startswith("shapes_video")
    assert (out / "train" / "config.yaml").read_text().startswith("trainer: d3po")
    records = [json.loads(line) for line in open(out / "train" / "logs" / "metrics.jsonl")]
    assert len(records) == 1 and "tie_fraction" in records[0] and "reward_mean" in records[0]
    assert not (out / "pairs").exists() and (out / "train" / "pytorch_lora_weights.safetensors").exists()
    assert "1 iterations, the judge picking the preferred clip of each pair" in (out / "report.md").read_text()
