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
