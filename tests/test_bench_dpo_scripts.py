"""The DPO speed benchmarks run their CPU paths here (so a lent GPU is spent measuring, not debugging)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(name):
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_dpo_vs_diffusers_dry_run_plans_both_sides_with_the_same_settings(capsys):
    assert _bench("dpo_vs_diffusers").main(["--dry-run", "--side", "nockpt=model.gradient_checkpointing=false"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" : ")[0] for line in lines] == ["diffusers", "diffalign", "nockpt"]
    for line in lines:
        assert "--resolution 128 --batch-size 2 --rank 8 --steps 3 --warmup 1 --threads 1" in line
    assert "--overrides model.gradient_checkpointing=false" in lines[2]


@pytest.mark.slow  # tiny SD and SDXL pipelines, one warm-up + one timed step per side (~10 CPU s)
def test_gpu_dpo_smoke_runs_each_side_on_cpu(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_dpo.py"), "--smoke", "--sides",
                           "diffusers,diffalign", "--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["model"], r["side"]) for r in rows] == [("sd15", "diffusers"), ("sd15", "diffalign"),
                                                       ("sdxl", "diffusers"), ("sdxl", "diffalign")]
    assert all(r["pairs_per_s"] > 0 and r["unet_gflop_per_sample"] > 0 for r in rows)
    assert "sd15 diffalign:" in proc.stdout and "the diffusers step's pairs/s" in proc.stdout


def test_gpu_dpo_dry_run_and_refusal_without_cuda(capsys):
    import torch

    gpu_dpo = _bench("gpu_dpo")
    assert gpu_dpo.main(["--dry-run"]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert len(plan) == 6 and plan[0].startswith("sd15: 512 px, 16 pairs/step") and plan[3].startswith("sdxl: 1024 px, 8 pairs/step")
    if not torch.cuda.is_available():
        assert gpu_dpo.main([]) == 2


def test_online_epoch_dry_run_plans_timing_and_memory_runs(capsys):
    assert _bench("online_epoch").main(["--dry-run", "--workers", "0,1", "--trained", "1,4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8  # 2 trainers x (2 timing runs + 2 memory runs)
    assert sum(line.startswith("MALLOC tight: ") for line in lines) == 4
    assert sum("--child-trainer flow_grpo" in line for line in lines) == 4


@pytest.mark.slow  # two tiny training iterations in-process (~3 CPU s)
@pytest.mark.parametrize("trainer", ["ddpo", "flow_grpo"])
def test_online_epoch_child_reports_the_time_split_and_phase_memory(trainer):
    bench = _bench("online_epoch")
    args = bench.argparse.Namespace(trainer=trainer, workers=1, trained=1, sd_model=None, sd3_model=None, latent=8,
                                    resolution=None, steps=3, batch=2, num_batches=2, cfg=3.0, epochs=1,
                                    reward="jpeg_compressibility", threads=1)
    res = bench.run_child(args)
    assert res["trained_timesteps"] == 1 and res["rollouts_per_epoch"] == 4 and len(res["epochs"]) == 1
    epoch = res["epochs"][0]
    assert epoch["sampling_s"] > 0 and epoch["train_s"] > 0 and epoch["samples_per_s"] == 4 / epoch["step_time"]
    assert [m["phase"] for m in res["memory"]] == ["sampling", "update"]
    assert all(m["peak_mb"] >= m["start_mb"] > 0 for m in res["memory"])
