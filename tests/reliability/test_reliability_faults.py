"""Fault injection: a run killed with SIGKILL inside a step, inside a checkpoint write or inside the
final export, then resumed with ``resume=latest`` in a new process, ends byte-identical to an
uninterrupted run in the test process (same LoRA tensors byte for byte, same header, same losses; so
the same seed twice gives the same run, checked in one process too by tests/test_train_offline.py);
a full disk during a checkpoint leaves the previous checkpoint complete and loadable."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from reliability_helpers import pairs_dir, snapshot  # noqa: F401 (pairs_dir: a fixture)

from diffalign.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from diffalign.train.metrics import read_metrics

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faulty_run.py")
STEPS, EVERY = 4, 1
LORA = "pytorch_lora_weights.safetensors"


def run(out, pairs_dir, cache, resume=None, kill=None) -> int:
    spec = {"out": str(out), "data": str(pairs_dir), "cache": str(cache), "steps": STEPS,
            "checkpointing_steps": EVERY, "resume": resume, "kill": kill}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, SCRIPT, json.dumps(spec)], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(done.stderr[-3000:])
    return done.returncode


def safetensors_content(blob: bytes) -> tuple[dict, bytes]:
    """(header, tensor bytes) of a safetensors file. The header is compared parsed: safetensors writes
    its ``__metadata__`` map in a per-process hash order, so two identical saves may order its keys
    differently; the tensor bytes and every header entry must be identical."""
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def outcome(out) -> tuple[tuple[dict, bytes], list[float]]:
    with open(os.path.join(out, LORA), "rb") as f:
        lora = safetensors_content(f.read())
    return lora, [r["loss"] for r in read_metrics(os.path.join(out, "logs", "metrics.jsonl"))]


@pytest.fixture(scope="module")
def reference(pairs_dir, tmp_path_factory):
    """The uninterrupted run, in this process (the same code the script runs, without a kill)."""
    import faulty_run

    root = tmp_path_factory.mktemp("reference")
    faulty_run.main({"out": str(root / "run"), "data": str(pairs_dir), "cache": str(root / "cache"), "steps": STEPS,
                     "checkpointing_steps": EVERY, "resume": None, "kill": None})
    return outcome(root / "run")


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["step:3", "checkpoint:2", "export"])
def test_killed_and_resumed_run_is_byte_identical(reference, pairs_dir, tmp_path, kill):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert run(out, pairs_dir, cache, kill=kill) == -signal.SIGKILL
    if kill == "export":
        assert (out / LORA).read_bytes() == b"half a LoRA"  # the kill really left a broken file
    else:
        assert not (out / LORA).exists()
    assert run(out, pairs_dir, cache, resume="latest") == 0
    lora, losses = outcome(out)
    assert lora == reference[0]
    assert losses == reference[1]  # one log, steps 1..4, as if never interrupted
    assert [c.step for c in list_checkpoints(str(out))] == [1, 2, 3, 4]
    assert not [n for n in os.listdir(out / "checkpoints") if n.startswith(".tmp-")]


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """ENOSPC half-way through writing checkpoint 2 (simulated: this machine cannot mount a tmpfs):
    the error reaches the caller, checkpoint 1 is untouched and loads, no partial checkpoint 2 is listed,
    and the half-written folder is removed."""
    import safetensors.torch

    params = {"w": torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))}
    first = save_checkpoint(str(tmp_path), 1, params, extra_state={"note": "one"})
    before = snapshot(first)
    save_file = safetensors.torch.save_file

    def full_disk(tensors, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"\0" * 16)
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with torch.no_grad():
        params["w"].add_(1)
    with pytest.raises(OSError) as err:
        save_checkpoint(str(tmp_path), 2, params, extra_state={"note": "two"})
    assert err.value.errno == errno.ENOSPC
    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    assert [c.step for c in list_checkpoints(str(tmp_path))] == [1]
    assert snapshot(first) == before
    assert os.listdir(tmp_path / "checkpoints") == ["step-000001"]  # no half-written folder left
    restored = {"w": torch.nn.Parameter(torch.zeros(2, 3))}
    state = load_checkpoint(list_checkpoints(str(tmp_path))[-1], restored)
    assert state == {"step": 1, "note": "one"} and torch.equal(restored["w"], torch.arange(6.0).reshape(2, 3))
