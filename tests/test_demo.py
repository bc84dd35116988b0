"""`diffalign demo`: the judged before/after alignment run on the shipped shapes-sd pipeline.

These tests check the plumbing on a small budget; the improvement itself (a full `make demo` run
and its spread over seeds) is measured and recorded in docs/shapes.md.
"""
from __future__ import annotations

import json

import pytest
import torch

from diffalign.cli import main
from diffalign.shapes import CATEGORIES, pretrained_path


@pytest.fixture(scope="module", autouse=True)
def _needs_shipped_pipeline():
    try:
        pretrained_path("sd")
    except FileNotFoundError as e:
        pytest.fail(f"the shipped shapes-sd pipeline is missing: {e}")


@pytest.mark.slow
def test_eval_only_reports_every_category(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--eval-only", "--out", str(out), "--eval-images-per-category", "2",
                 "--threads", str(torch.get_num_threads())])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["before"]) == {*CATEGORIES, "overall"}
    assert summary["before"]["overall"] == pytest.approx(sum(summary["before"][c] for c in CATEGORIES) / 6)
    assert (out / "before.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "overall" in printed and all(c in printed for c in CATEGORIES)


@pytest.mark.slow
def test_small_alignment_run_writes_before_after_lora_and_curves(tmp_path):
    out = tmp_path / "demo"
    # a small budget: 10 sampling steps (the shipped 20 halved), the test's own torch threads (one per
    # pytest-xdist worker) instead of every core
    budget = ["--eval-images-per-category", "1", "--steps", "10", "--threads", str(torch.get_num_threads()),
              "--images-per-prompt", "2"]
    code = main(["demo", "--out", str(out), *budget, "--train-prompts", "48", "max_steps=3", "batch_size=2",
                 "progress_bar=false"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["before"]) == set(summary["after"]) == {*CATEGORIES, "overall"}
    assert summary["pairs"] > 0 and summary["train_steps"] == 3
    assert (out / "dpo" / "pytorch_lora_weights.safetensors").exists()
    assert (out / "pairs" / "pairs.jsonl").exists()
    for name in ("before_after.png", "training.png"):
        assert (out / name).stat().st_size > 0
    # `make demo` again into the same folder: the demo replaces its previous run instead of refusing
    # (its AI feedback from 16 prompts: still pairs, as the run asserts by finishing)
    code = main(["demo", "--out", str(out), *budget, "--train-prompts", "16", "max_steps=2", "batch_size=2",
                 "progress_bar=false"])
    again = json.loads((out / "summary.json").read_text())
    assert code == 0 and again["train_steps"] == 2 and 0 < again["pairs"] != summary["pairs"]


def test_held_out_plan_gives_every_category_the_same_number_of_images():
    from diffalign.demo import held_out_plan
    from diffalign.shapes import split_rows

    rows, counts = held_out_plan(64, seed=0)
    per_tag = {}
    for row, n in zip(rows, counts):
        per_tag[row["tag"]] = per_tag.get(row["tag"], 0) + n
        assert row in split_rows("test", [row["tag"]])  # held-out prompts only
    assert set(per_tag) == set(CATEGORIES)
    # single_object has one held-out prompt: 64 images of it; colour_attr has hundreds: 16 prompts x 4
    assert per_tag["single_object"] == 64 and counts[[r["tag"] for r in rows].index("single_object")] == 64
    assert sum(1 for r in rows if r["tag"] == "color_attr") == 16
    assert all(64 <= per_tag[t] <= 70 for t in CATEGORIES), per_tag
    assert len({r["prompt"] for r in rows}) == len(rows)


def test_feedback_rows_come_from_the_training_split_of_the_asked_categories():
    import warnings

    from diffalign.demo import feedback_rows
    from diffalign.shapes.prompts import split_rows

    test_prompts = {r["prompt"] for r in split_rows("test")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few training prompts in counting: they repeat, with a warning
        rows = feedback_rows(40, seed=0, categories="counting, position")
        everything = feedback_rows(60, seed=0)
    assert len(rows) == 40 and {r["tag"] for r in rows} == {"counting", "position"}
    assert sum(r["tag"] == "counting" for r in rows) == 20
    assert not test_prompts & {r["prompt"] for r in rows + everything}
    assert {r["tag"] for r in everything} == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    assert feedback_rows(40, seed=0, categories="counting,position") == rows  # seeded
