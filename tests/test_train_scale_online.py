"""Online trainers across process counts, for real: ``torchrun --nproc_per_node 2`` on CPU (2 gloo
ranks; the run records and the test asserts world size 2) with per-process batch b reproduces one
process with batch 2b — the same per-step loss, reward and lr and the same final LoRA — for a
policy-gradient trainer (DDPO with groups of 2 rollouts per prompt spread over the ranks and
per-prompt statistics over the gathered rewards, 4 optimizer steps per iteration) and a
reward-gradient trainer (DRaFT and ReFL, 2 accumulation micro-batches; ReFL's step with gradient is
drawn once per micro-batch for all processes)."""
from __future__ import annotations

import sys

import pytest
import torch

from diffalign.pipelines.tiny import build_tiny_pipeline

from test_train_scale import FSDP2_CPU, TORCHRUN, _launch, _result


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale_online")
    build_tiny_pipeline("sd").save_pretrained(root / "model")
    return root


def _recipe(root, name: str, trainer: str, sample_batch: int, train_batch: int) -> str:
    common = (
        f"trainer: {trainer}\noutput_dir: {root / name}\nmax_steps: 2\nprogress_bar: false\nseed: 5\n"
        f"model:\n  pretrained: {root / 'model'}\nlora:\n  rank: 4\n"
        "optim:\n  lr: 0.001\n  weight_decay: 0.0\n  lr_scheduler: cosine\n  warmup_steps: 2\n"
        "prompts:\n  shapes_rows: 24\nevaluation:\n  every_steps: 0\n"
    )
    if trainer == "ddpo":  # 2 sampling batches of groups of 2; 4 micro-batches = 4 optimizer steps per iteration
        extra = (f"batch_size: {train_batch}\ngroup_size: 2\ntracker_min_count: 2\n"
                 f"sampling:\n  num_inference_steps: 3\n  batch_size: {sample_batch}\n  num_batches: 2\n  guidance_scale: 3.0\n"
                 "reward:\n  name: jpeg_compressibility\n  workers: 1\n")
    else:  # a differentiable reward on colour prompts, 2 accumulation micro-batches
        grad = ("backprop_steps: 2\n" if trainer == "draft" else  # ReFL: one step with gradient, drawn in [0, 2]
                "step_min: 0\nstep_max: 2\nloss:\n  kind: negative\n  scale: 1.0\n")
        extra = (f"gradient_accumulation_steps: 2\n{grad}"
                 f"sampling:\n  num_inference_steps: 3\n  batch_size: {sample_batch}\n  guidance_scale: 3.0\n"
                 "reward:\n  name: shapes_color\n  workers: 0\n")
        common = common.replace("  shapes_rows: 24\n", "  shapes_rows: 24\n  categories: [colors, color_attr]\n")
    path = root / f"{name}.yaml"
    path.write_text(common + extra)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("trainer,batches", [("ddpo", (4, 2)), ("draft", (2, 1)), ("refl", (2, 1))])
def test_two_gloo_ranks_reproduce_one_process_online(model, trainer, batches):
    """DRaFT also runs under an FSDP2 config on CPU (the LoRA'd UNet sharded with torch's fully_shard,
    accumulation over micro-batches without no_sync): the same numbers again."""
    sample_batch, train_batch = batches
    _launch([sys.executable, "-m", "diffalign", "train", _recipe(model, f"{trainer}-one", trainer, sample_batch, train_batch)])
    one, one_rows, one_lora = _result(model, f"{trainer}-one")
    one_rows = [r for r in one_rows if "loss" in r]
    assert one["num_processes"] == 1
    assert max(float(v.abs().max()) for k, v in one_lora.items() if "lora.up" in k) > 0  # it trained
    for name, env in [("two", {}), *([("fsdp2", FSDP2_CPU)] if trainer == "draft" else [])]:
        _launch([*TORCHRUN, "-m", "diffalign", "train",
                 _recipe(model, f"{trainer}-{name}", trainer, sample_batch // 2, max(train_batch // 2, 1))], **env)
        two, two_rows, two_lora = _result(model, f"{trainer}-{name}")
        assert (two["num_processes"], two["sharded"]) == (2, name == "fsdp2")  # really two cooperating ranks
        two_rows = [r for r in two_rows if "loss" in r]
        assert [r["step"] for r in one_rows] == [r["step"] for r in two_rows] == [1, 2]
        if trainer == "ddpo":
            assert one_rows[-1]["optimizer_steps"] == two_rows[-1]["optimizer_steps"] == 8
        for a, b in zip(one_rows, two_rows):
            assert b["lr"] == a["lr"]
            for key in ("loss", "reward_mean"):
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (name, key)
        assert one_lora.keys() == two_lora.keys()
        for k in one_lora:  # the same weights
            torch.testing.assert_close(two_lora[k], one_lora[k], rtol=1e-4, atol=1e-6)


def test_engine_and_quantization_errors(monkeypatch):
    """One-line errors: an FSDP / DeepSpeed accelerate config on a machine without GPU, DeepSpeed ZeRO
    for a trainer that accumulates by hand (no_sync), quantized base weights or offloaded frozen parts on CPU."""
    from diffalign.pipelines.models import offload_frozen, quantization_config
    from diffalign.train import distributed

    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "has_accelerator_device", lambda: False)
    distributed.check_engine("ddpo", hand_synced=True)  # no engine asked: fine
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(RuntimeError, match=r"FSDP1 \(fsdp_version: 1\) accelerate config needs GPUs .*`torchrun --nproc_per_node N"):
        distributed.check_engine("offline", hand_synced=False)
    monkeypatch.setattr(distributed, "has_accelerator_device", lambda: True)
    distributed.check_engine("ddpo", hand_synced=True)  # FSDP on GPUs: fine for every trainer
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    distributed.check_engine("offline", hand_synced=False)
    with pytest.raises(RuntimeError, match="ddpo trainer accumulates gradients with no_sync"):
        distributed.check_engine("ddpo", hand_synced=True)
    for kind in ("nf4", "int8", "fp8"):
        with pytest.raises(ValueError, match=f"model.quantize={kind} needs a CUDA GPU"):
            quantization_config(kind, "cpu")
    with pytest.raises(ValueError, match="model.offload_frozen keeps frozen parts in CPU memory for a CUDA GPU"):
        offload_frozen(None, "cpu")


def test_resume_batch_check():
    from diffalign.train.distributed import check_resume_batch

    check_resume_batch(None, {"batch": 4}, "ck")  # checkpoints of older versions: no record
    check_resume_batch({"batch": 4, "rollouts": 8}, {"batch": 4, "rollouts": 8}, "ck")
    with pytest.raises(ValueError, match=r"ck was trained with other global batch sizes \(rollouts 8 -> 4\)"):
        check_resume_batch({"batch": 4, "rollouts": 8}, {"batch": 4, "rollouts": 4}, "ck")


def test_gpu_scale_script_dry_run_and_paper_model(capsys):
    """bench/gpu_scale.py runs on CPU as a dry run (one accelerate launch line per shipped config it
    checks) and its memory / communication model gives the hand-computed figures."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "bench" / "gpu_scale.py"
    spec = importlib.util.spec_from_file_location("gpu_scale", path)
    gpu_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_scale)
    assert gpu_scale.main(["--dry-run", "--configs", "fsdp2_lora", "deepspeed_zero3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "fsdp2_lora.yaml" in lines[0] and "--lora-rank 64" in lines[0]
    assert "deepspeed_zero3.yaml" in lines[1] and "--lora-rank 0" in lines[1]  # full fine-tune under ZeRO-3
    gib = 2**30
    # 1B trained params, 8 GPUs: full fine-tune DDP = 16 B/param + a 2 B/param reference; FSDP2 shards the 16
    assert gpu_scale.memory_gib(1.0, 0.0, 8, "full", "ddp") == pytest.approx(18e9 / gib)
    assert gpu_scale.memory_gib(1.0, 0.0, 8, "full", "fsdp2") == pytest.approx((2e9 + 2e9) / gib)
    assert gpu_scale.memory_gib(1.0, 0.5, 8, "lora", "ddp") == pytest.approx((2e9 + 16 * 1e7 + 1e9) / gib)
    # DDP all-reduces fp32 grads: 2 x 7/8 x 4 GB; FSDP2 gathers bf16 weights twice and reduce-scatters grads
    assert gpu_scale.comm_gib(1.0, 8, "full", "ddp") == pytest.approx(2 * 7 / 8 * 4e9 / gib)
    assert gpu_scale.comm_gib(1.0, 8, "full", "fsdp2") == pytest.approx((2 * 7 / 8 * 2e9 + 7 / 8 * 4e9) / gib)
    assert gpu_scale.comm_gib(1.0, 8, "lora", "ddp") == pytest.approx(2 * 7 / 8 * 4e7 / gib)
