"""``bench/online_vs_originals.py``: the plan, its refusals, the loader shims, and (slow, where the
original repositories are given by environment variable) a tiny run whose two sides agree."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        return __import__("online_vs_originals")
    finally:
        sys.path.pop(0)


def test_dry_run_plans_both_loops_with_the_same_settings(capsys):
    bench = _bench()
    assert bench.main(["--dry-run", "--steps", "6", "--batch", "2", "--rounds", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["sd", "sd3"]
    assert "tiny sd (latent 16), batch 2, 6 steps, CFG 4.5, eta 1.0, 4 rounds, original from MISSING --ddpo-repo" == lines[0][4:]
    assert "noise level 0.7" in lines[1] and "MISSING --flow-grpo-repo" in lines[1]
    with pytest.raises(SystemExit) as e:  # a real run without the original code is refused
        bench.main(["--families", "sd"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        bench.main(["--dry-run", "--families", "sdxl"])


@pytest.mark.slow  # imports diffusers (~5 s cold)
def test_loaders_import_the_originals_from_the_given_root_with_the_randn_tensor_alias(tmp_path):
    import diffusers.utils

    bench = _bench()
    patch = tmp_path / "ddpo" / "ddpo_pytorch" / "diffusers_patch"
    patch.mkdir(parents=True)
    (patch / "pipeline_with_logprob.py").write_text(
        "from diffusers.utils import randn_tensor\ndef pipeline_with_logprob(self):\n    return randn_tensor\n")
    flow = tmp_path / "fg" / "flow_grpo" / "diffusers_patch"
    flow.mkdir(parents=True)
    (flow / "sd3_sde_with_logprob.py").write_text("def sde_step_with_logprob():\n    return 7\n")
    (flow / "sd3_pipeline_with_logprob.py").write_text(
        "from .sd3_sde_with_logprob import sde_step_with_logprob\ndef pipeline_with_logprob(self):\n"
        "    return sde_step_with_logprob()\n")
    path_before = list(sys.path)
    try:
        fn = bench.load_ddpo(str(tmp_path / "ddpo"))
        assert fn(None) is diffusers.utils.torch_utils.randn_tensor
        assert bench.load_flow_grpo(str(tmp_path / "fg"))(None) == 7
        assert sys.path == path_before
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] in ("ddpo_pytorch", "flow_grpo")]:
            del sys.modules[name]


@pytest.mark.slow  # tiny SD and SD3 pipelines, 3 calls per side (~30 s on a loaded 2-core machine)
@pytest.mark.skipif(not (os.environ.get("DDPO_PYTORCH_REPO") and os.environ.get("FLOW_GRPO_REPO")),
                    reason="needs DDPO_PYTORCH_REPO and FLOW_GRPO_REPO: roots of the original repositories")
def test_tiny_run_both_sides_agree_exactly(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "online_vs_originals.py"), "--ddpo-repo",
                           os.environ["DDPO_PYTORCH_REPO"], "--flow-grpo-repo", os.environ["FLOW_GRPO_REPO"],
                           "--rounds", "1", "--steps", "3", "--batch", "2", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["family"] for r in rows] == ["sd", "sd3"]
    for r in rows:
        assert r["shapes_equal"] and r["log_prob_scale"] > 0.1
        assert r["max_diff_latents"] <= 1e-5 and r["max_diff_log_probs"] <= 1e-5 and r["max_diff_images"] <= 1e-5
        assert r["ratio_cpu"] > 0
