"""`diffalign demo`: the judged before/after alignment run on the shipped shapes-sd pipeline.

These tests check the plumbing on a small budget; the improvement itself (a full `make demo` run
and its spread over seeds) is measured and recorded in docs/shapes.md.
"""
from __future__ import annotations

import json

import pytest

from diffalign.cli import main
from diffalign.shapes import CATEGORIES, pretrained_path


@pytest.fixture(scope="module", autouse=True)
def _needs_shipped_pipeline():
    try:
        pretrained_path("sd")
    except FileNotFoundError as e:
        pytest.fail(f"the shipped shapes-sd pipeline is missing: {e}")


def test_eval_only_reports_every_category(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--eval-only", "--out", str(out), "--eval-prompts-per-category", "1",
                 "--eval-images-per-prompt", "2"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["before"]) == {*CATEGORIES, "overall"}
    assert summary["before"]["overall"] == pytest.approx(sum(summary["before"][c] for c in CATEGORIES) / 6)
    assert (out / "before.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "overall" in printed and all(c in printed for c in CATEGORIES)


def test_small_alignment_run_writes_before_after_lora_and_curves(tmp_path):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--eval-prompts-per-category", "1", "--eval-images-per-prompt", "1",
                 "--train-prompts", "48", "--images-per-prompt", "2", "max_steps=3", "batch_size=2",
                 "progress_bar=false"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["before"]) == set(summary["after"]) == {*CATEGORIES, "overall"}
    assert summary["pairs"] > 0 and summary["train_steps"] == 3
    assert (out / "dpo" / "pytorch_lora_weights.safetensors").exists()
    assert (out / "pairs" / "pairs.jsonl").exists()
    for name in ("before_after.png", "training.png"):
        assert (out / name).stat().st_size > 0
