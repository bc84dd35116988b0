"""The prepared GPU scripts run their dry run on this CPU (so a lent GPU is spent measuring, not debugging)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_attention_dry_run(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_attention.py"), "--dry-run", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"].split(",")[0], r["backend"]) for r in rows] == [("tiny UNet", "sdpa"), ("tiny FLUX", "sdpa")]
    assert all(r["s_per_iter"] > 0 and r["max_abs_diff_vs_sdpa"] == 0.0 for r in rows)
    assert "| tiny UNet, batch 2, 64 px | sdpa |" in proc.stdout


def test_gpu_attention_refuses_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run for real")
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import gpu_attention
    finally:
        sys.path.pop(0)
    assert gpu_attention.main([]) == 2
