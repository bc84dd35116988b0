"""The bad-data matrix: each broken data set stops the run during set-up (before any training step)
with a DatasetError naming the file, row and column, printed by the command line as one line; the
previous run in the output folder (replaced only once the new run starts, ``overwrite=true``) keeps
every file byte for byte. Also: ``overwrite=true`` replaces a run cleanly, and KTO trains from pairs
with ``data.unpaired_from_pairs=true`` alone."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from reliability_helpers import offline_config, pairs_dir, snapshot  # noqa: F401 (pairs_dir: a fixture)

from diffalign.cli import one_line
from diffalign.data.errors import DatasetError
from diffalign.pipelines import adapter_for
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train.checkpoint import list_checkpoints
from diffalign.train.metrics import read_metrics
from diffalign.train.offline import OfflinePreferenceTrainer


def _image(rows, i, col):
    return rows[i][col] if isinstance(rows[i][col], str) else rows[i][col]["path"]


def corrupt_image(d, rows):
    with open(os.path.join(d, _image(rows, 1, "jpg_1")), "wb") as f:
        f.write(b"this is not a png")


def truncated_image(d, rows):
    path = os.path.join(d, _image(rows, 2, "jpg_0"))
    with open(path, "rb") as f:
        head = f.read(60)
    with open(path, "wb") as f:
        f.write(head)


def missing_image(d, rows):
    os.remove(os.path.join(d, _image(rows, 3, "jpg_0")))


def set_value(row, col, value):
    def mutate(d, rows):
        rows[row][col] = value
    return mutate


def empty(d, rows):
    rows.clear()


# case -> (mutation, what the DatasetError must say)
BAD_DATA = {
    "corrupt image": (corrupt_image, r"pairs.jsonl row 1 \(line 2\) column jpg_1: cannot decode image"),
    "truncated image": (truncated_image, r"pairs.jsonl row 2 \(line 3\) column jpg_0: cannot decode image"),
    "missing image": (missing_image, r"pairs.jsonl row 3 \(line 4\) column jpg_0: image file not found"),
    "label not a number": (set_value(3, "label_0", "yes"), r"pairs.jsonl row 3 \(line 4\) column label_0: label_0 is not a number"),
    "label out of range": (set_value(0, "label_0", 2.5), r"pairs.jsonl row 0 \(line 1\) column label_0"),
    "null caption": (set_value(2, "caption", None), r"pairs.jsonl row 2 \(line 3\) column caption: caption is missing"),
    "caption not text": (set_value(1, "caption", 5), r"pairs.jsonl row 1 \(line 2\) column caption: caption must be a string"),
    "empty data set": (empty, r"^pairs.jsonl: the data set is empty \(no rows\)$"),
}


def broken_copy(pairs_dir, tmp_path, mutate) -> str:
    d = str(tmp_path / "data")
    shutil.copytree(pairs_dir, d)
    with open(os.path.join(d, "pairs.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    mutate(d, rows)
    with open(os.path.join(d, "pairs.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    return d


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_stops_in_set_up_and_changes_nothing(pairs_dir, tmp_path, case):
    mutate, expected = BAD_DATA[case]
    data = broken_copy(pairs_dir, tmp_path, mutate)
    out = tmp_path / "run"
    (out / "checkpoints" / "step-000002").mkdir(parents=True)
    (out / "checkpoints" / "step-000002" / "state.json").write_text('{"step": 2}')
    (out / "pytorch_lora_weights.safetensors").write_bytes(b"the previous run's LoRA")
    before, data_before = snapshot(out), snapshot(data)
    cfg = offline_config(out, data, tmp_path / "cache", overwrite=True)
    with pytest.raises(DatasetError) as err:
        OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd"))).train()
    line = one_line(err.value)
    assert "\n" not in line
    import re

    assert re.search(expected, line), line
    assert snapshot(out) == before and snapshot(data) == data_before


def test_one_line_of_a_many_row_data_error():
    err = DatasetError("pairs.jsonl: 2 of 6 examples failed validation:\n  a row 1\n  a row 4", ["a row 1", "a row 4"])
    assert one_line(err) == "pairs.jsonl: 2 of 6 examples failed validation (2 problems; first: a row 1)"


def _train(cfg):
    trainer = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    return trainer.train()


@pytest.mark.slow
def test_overwrite_replaces_a_run_cleanly_and_resume_continues_the_new_one(pairs_dir, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    _train(offline_config(out, pairs_dir, cache, checkpointing_steps=1))  # the old run: 3 steps
    (out / "validation").mkdir()
    (out / "my_notes.txt").write_text("kept")
    new = offline_config(out, pairs_dir, cache, overwrite=True, seed=5)
    new.max_steps = 2
    _train(new)
    assert [c.step for c in list_checkpoints(str(out))] == [2]  # none of the old run's
    assert [r["step"] for r in read_metrics(str(out / "logs" / "metrics.jsonl"))] == [1, 2]
    assert not (out / "validation").exists() and (out / "my_notes.txt").read_text() == "kept"
    more = offline_config(out, pairs_dir, cache, resume="latest", seed=5)
    more.max_steps = 3
    _train(more)
    assert [r["step"] for r in read_metrics(str(out / "logs" / "metrics.jsonl"))] == [1, 2, 3]


@pytest.mark.slow
def test_kto_from_pairs_with_the_flag_alone(pairs_dir, tmp_path):
    cfg = offline_config(tmp_path / "run", pairs_dir, tmp_path / "cache", method="kto")
    cfg.data.unpaired_from_pairs, cfg.max_steps = True, 1
    assert cfg.data.kind == "pairs"
    result = _train(cfg)
    rows = read_metrics(result.metrics_path)
    assert len(rows) == 1 and rows[0]["loss"] > 0
