"""Evaluation jobs on several processes for real: ``torchrun --nproc_per_node 2 -m diffalign eval
geneval`` / ``eval compare`` on CPU (2 gloo ranks) split the prompts (and GenEval's images) over the
ranks and write the same images, verdicts, scores and summaries as one process."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from diffalign import shapes
from diffalign.geneval import write_metadata

from test_train_scale import TORCHRUN, _launch

# 5 prompts over 2 processes: an uneven split (3 + 2)
ROWS = [shapes.all_rows(tag)[0] for tag in shapes.CATEGORIES[:5]]


@pytest.mark.slow
def test_geneval_on_two_processes_matches_one(tmp_path):
    meta = tmp_path / "meta.jsonl"
    write_metadata(meta, ROWS)
    args = ["-m", "diffalign", "eval", "geneval", "--pipeline", "shapes-sd", "--metadata", str(meta),
            "--images-per-prompt", "2", "--steps", "3", "--batch-size", "2", "--device", "cpu"]
    _launch([sys.executable, *args, "--out", str(tmp_path / "one")])  # a fresh process, as the ranks (1 thread)
    _launch([*TORCHRUN, *args, "--out", str(tmp_path / "two")])

    def read(name):
        lines = (tmp_path / name / "results.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        return rows, summary

    (one, one_summary), (two, two_summary) = read("one"), read("two")
    assert (one_summary["processes"], two_summary["processes"]) == (1, 2)  # really two ranks
    assert len(one) == len(two) == 10
    for a, b in zip(one, two):
        assert b["filename"].replace(str(tmp_path / "two"), "") == a["filename"].replace(str(tmp_path / "one"), "")
        for key in ("prompt_index", "image_index", "prompt", "correct", "reason", "details"):
            assert b[key] == a[key], key
        with Image.open(a["filename"]) as x, Image.open(b["filename"]) as y:
            assert np.array_equal(np.asarray(x), np.asarray(y))  # the same pixels
    for key in ("overall", "correct_images", "correct_prompts", "per_tag"):
        assert two_summary[key] == one_summary[key]


@pytest.mark.slow
def test_compare_on_two_processes_matches_one(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    write_metadata(prompts, ROWS[:3])
    args = ["-m", "diffalign", "eval", "compare", "--a", "shapes-sd", "--b", "shapes-sd3", "--prompts", str(prompts),
            "--reward", "shapes", "--images-per-prompt", "2", "--steps", "3", "--device", "cpu"]
    _launch([sys.executable, *args, "--out", str(tmp_path / "one")])  # a fresh process, as the ranks (1 thread)
    _launch([*TORCHRUN, *args, "--out", str(tmp_path / "two")])
    one = [json.loads(x) for x in (tmp_path / "one" / "results.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two" / "results.jsonl").read_text().splitlines()]
    assert [(r["prompt_index"], r["image_index"]) for r in two] == [(i, k) for i in range(3) for k in range(2)]
    assert [r["scores"] for r in two] == [r["scores"] for r in one]
    s1, s2 = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("one", "two"))
    assert (s1["processes"], s2["processes"]) == (1, 2)
    assert s2["rewards"] == s1["rewards"]
