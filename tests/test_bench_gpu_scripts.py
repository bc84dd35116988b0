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


def _gpu_video_memory():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import gpu_video_memory
    finally:
        sys.path.pop(0)
    return gpu_video_memory


def test_gpu_video_memory_builds_the_published_cogvideox_sizes():
    """The random-weight transformers it measures have the published sizes (counted on the meta device):
    CogVideoX-2b 1.69 B parameters, CogVideoX-5b 5.57 B, and the recipes it runs exist."""
    import torch
    from diffusers import CogVideoXTransformer3DModel

    import diffalign  # noqa: F401
    from diffalign.train_command import list_recipes

    bench = _gpu_video_memory()
    counts = {}
    for name, config in bench.TRANSFORMERS.items():
        with torch.device("meta"):
            counts[name] = sum(p.numel() for p in CogVideoXTransformer3DModel(**config).parameters()) / 1e9
    assert round(counts["cogvideox-2b"], 2) == 1.69 and round(counts["cogvideox-5b"], 2) == 5.57
    assert set(bench.RECIPE.values()) | set(bench.ONLINE.values()) <= set(list_recipes())
    assert bench.parse_size("480x720") == (480, 720) and bench.parse_size("512") == (512, 512)


def test_gpu_video_memory_plans_and_refuses_without_cuda(capsys):
    import torch

    bench = _gpu_video_memory()
    assert bench.main(["--dry-run"]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert plan[0].startswith("cogvideox-2b: recipe cogvideox2b_dense_dpo, 49 frames of 480x720")
    assert plan[1].startswith("cogvideox-5b: recipe cogvideox5b_dense_dpo")
    assert plan[2].startswith("cogvideox-2b: recipe cogvideox2b_ddpo_video, 49 frames of 480x720, one iteration of 6-step")
    assert plan[3].startswith("cogvideox-2b: recipe cogvideox2b_vader_hps") and len(plan) == 4
    assert bench.main(["--dry-run", "--models", "", "--online", "vader"]) == 0
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()] == ["cogvideox-2b: recipe cogvideox2b_vader_hps"]
    with pytest.raises(SystemExit):
        bench.main(["--dry-run", "--online", "grpo"])
    assert "unknown online recipes ['grpo']" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert bench.main([]) == 2


@pytest.mark.slow  # the tiny CogVideoX through the product trainers, all four recipes (~15 CPU s)
def test_gpu_video_memory_smoke_trains_each_recipe_on_cpu(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_video_memory.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["recipe"] for r in rows] == ["cogvideox2b_dense_dpo", "cogvideox5b_dense_dpo", "cogvideox2b_ddpo_video",
                                           "cogvideox2b_vader_hps"]
    assert all((r["height"], r["width"], r["frames"]) == (16, 24, 9) for r in rows)
    assert all(r["s_per_step"] > 0 and r["lora_params_m"] > 0 for r in rows[:2])
    # the online recipes ran their own trainers on the recipes' rewards (HPSv2.1 read from the file written)
    ddpo, vader = rows[2:]
    assert ddpo["reward"] == "video(hpsv2.1, frames=tsn, num_frames=4)" and ddpo["sampling_batch"] == 2
    assert vader["reward"] == "video(hpsv2.1, frames=uniform, num_frames=3)" and vader["sampling_batch"] == 1
    assert all(r["s_per_iteration"] > 0 and r["lora_params_m"] > 0 and r["denoising_steps"] == 4 for r in rows[2:])
