"""Several processes for real: ``torchrun --nproc_per_node 2`` on CPU gives two cooperating gloo ranks
(the run records and the test asserts world size 2), the lr at every step equals the one-process
run's, and W=2 processes with batch b reproduce one process with batch 2b (losses and LoRA)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffalign.data import write_pairs_jsonl
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train import distributed
from diffalign.train.metrics import read_metrics

STEPS = 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    rng = np.random.default_rng(0)
    pairs = [{"caption": f"a photo of thing {i}", "jpg_0": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
              "jpg_1": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "label_0": float(i % 2)} for i in range(8)]
    write_pairs_jsonl(str(root / "pairs"), pairs)
    build_tiny_pipeline("sd").save_pretrained(root / "model")
    return root


def _recipe(root, name: str, batch_size: int, steps: int = STEPS, lora: str = "rank: 4", lr: float = 0.001) -> str:
    path = root / f"{name}.yaml"
    path.write_text(
        f"method: diffusion_dpo\nloss:\n  beta: 50\noutput_dir: {root / name}\nmax_steps: {steps}\nbatch_size: {batch_size}\n"
        f"progress_bar: false\nseed: 3\nmodel:\n  pretrained: {root / 'model'}\nlora:\n  {lora}\n"
        f"optim:\n  lr: {lr}\n  lr_scheduler: cosine\n  warmup_steps: 2\n"
        f"data:\n  path: {root / 'pairs'}\n  resolution: 32\ncache:\n  dir: {root / 'cache'}\n"
    )
    return str(path)


def _launch(cmd: list[str], **env) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FSDP_", "WORLD_SIZE", "RANK", "MASTER_"))}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900,  # generous: a loaded 2-core machine
                         env={**base, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


def _result(root, name: str):
    run = root / name
    summary = json.loads((run / "train_summary.json").read_text())
    return summary, read_metrics(str(run / "logs" / "metrics.jsonl")), load_file(str(run / "pytorch_lora_weights.safetensors"))


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def runs(tiny):
    """One process with batch 2 and (plain torchrun, no ACCELERATE_USE_CPU) 2 ranks with batch 1."""
    _launch([sys.executable, "-m", "diffalign", "train", _recipe(tiny, "one", batch_size=2)])
    _launch([*TORCHRUN, "-m", "diffalign", "train", _recipe(tiny, "two", batch_size=1), "checkpointing_steps=3"])
    return _result(tiny, "one"), _result(tiny, "two")


@pytest.mark.slow
def test_two_gloo_ranks_reproduce_one_process(runs):
    """2 ranks with batch 1 == 1 process with batch 2: the same lr (cosine, warmup 2), loss and
    implicit accuracy at every step and the same LoRA."""
    (one, one_rows, one_lora), (two, two_rows, two_lora) = runs
    assert (one["num_processes"], two["num_processes"]) == (1, 2)  # really two cooperating ranks
    # the one-process schedule by hand: warmup 5e-4, 1e-3, then cosine over the 4 remaining steps
    assert [r["lr"] for r in one_rows] == pytest.approx([5e-4, 1e-3, 8.5355339e-4, 5e-4, 1.4644661e-4, 0.0])
    assert [r["lr"] for r in two_rows] == [r["lr"] for r in one_rows]
    assert [r["step"] for r in two_rows] == list(range(1, STEPS + 1))
    for a, b in zip(one_rows, two_rows):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
        assert b["implicit_acc"] == a["implicit_acc"]
    assert one_lora.keys() == two_lora.keys()
    assert max(float(v.abs().max()) for k, v in one_lora.items() if "lora.up" in k) > 0  # it trained (up starts at 0) ...
    for k in one_lora:  # ... to the same weights
        torch.testing.assert_close(two_lora[k], one_lora[k], rtol=1e-4, atol=1e-6)


def test_cpu_processes_and_launch_errors(monkeypatch):
    """Several launched processes and no GPU -> gloo ranks; `accelerate launch --cpu --num_processes 2`
    (one process, no mpirun) -> a one-line error naming torchrun."""
    for name in ("ACCELERATE_USE_CPU", "ACCELERATE_MIXED_PRECISION", "MASTER_ADDR", *distributed.WORLD_SIZE_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "has_accelerator_device", lambda: False)
    assert distributed.accelerator_kwargs() == {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.accelerator_kwargs() == {"cpu": True}
    monkeypatch.setattr(distributed, "has_accelerator_device", lambda: True)
    assert distributed.accelerator_kwargs() == {}  # GPUs: accelerate picks NCCL itself
    monkeypatch.delenv("WORLD_SIZE")
    # what accelerate's simple launcher sets for --cpu --num_processes 2
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node N"):
        distributed.accelerator_kwargs()
    monkeypatch.setenv("PMI_SIZE", "2")  # launched through mpirun: fine
    assert distributed.accelerator_kwargs() == {}


EXPECTED_CONFIGS = {
    "single_gpu": ("NO", {}), "multi_gpu": ("MULTI_GPU", {}), "multi_node": ("MULTI_GPU", {}),
    "fsdp2_lora": ("FSDP", {"fsdp_version": 2, "fsdp_reshard_after_forward": True, "fsdp_state_dict_type": "FULL_STATE_DICT"}),
    "fsdp2_full": ("FSDP", {"fsdp_version": 2, "fsdp_reshard_after_forward": True, "fsdp_state_dict_type": "SHARDED_STATE_DICT"}),
    "deepspeed_zero2": ("DEEPSPEED", {"zero_stage": 2, "offload_optimizer_device": "none"}),
    "deepspeed_zero2_offload": ("DEEPSPEED", {"zero_stage": 2, "offload_optimizer_device": "cpu"}),
    "deepspeed_zero3": ("DEEPSPEED", {"zero_stage": 3, "offload_param_device": "none"}),
    "deepspeed_zero3_offload": ("DEEPSPEED", {"zero_stage": 3, "offload_optimizer_device": "cpu", "offload_param_device": "cpu"}),
}


def test_shipped_accelerate_configs_parse_with_accelerate(capsys):
    """Every shipped config loads with accelerate's own loader with the distributed type its name says,
    and `diffalign train --list-accelerate` lists them with their paths."""
    from accelerate.commands.config.config_args import load_config_from_file

    from diffalign.cli import main

    assert main(["train", "--list-accelerate"]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.strip().splitlines())
    assert set(listed) == set(EXPECTED_CONFIGS)
    for name, (kind, fields) in EXPECTED_CONFIGS.items():
        cfg = load_config_from_file(listed[name])
        assert cfg.distributed_type == kind, name
        section = cfg.fsdp_config if kind == "FSDP" else cfg.deepspeed_config
        assert {k: section.get(k) for k in fields} == fields, name
    node = load_config_from_file(listed["multi_node"])
    assert (node.num_machines, node.machine_rank, node.main_process_ip) == (2, 0, "10.0.0.1")


@pytest.mark.slow
def test_kill_one_rank_then_resume_continues_exactly(tiny, runs):
    """kill -9 of rank 0 during a 2-process run that checkpoints every step: the newest complete
    checkpoint loads and resuming on 2 processes ends exactly where the uninterrupted run did."""
    import psutil

    _, (_, two_rows, two_lora) = runs
    recipe, run = _recipe(tiny, "killed", batch_size=1), tiny / "killed"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WORLD_SIZE", "RANK", "MASTER_"))}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([*TORCHRUN, "-m", "diffalign", "train", recipe, "checkpointing_steps=1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "step-000002").exists():
            assert proc.poll() is None and time.time() < deadline, "the run ended before its second checkpoint"
            time.sleep(0.02)
        rank0 = [c for c in psutil.Process(proc.pid).children(recursive=True) if c.environ().get("RANK") == "0"]
        assert len(rank0) == 1
        rank0[0].kill()  # SIGKILL
        assert proc.wait(timeout=120) != 0  # the launcher sees the dead rank and stops the other
    finally:
        if proc.poll() is None:
            proc.kill()
    steps = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("step-*"))
    assert steps and steps[-1] < STEPS  # killed before the end
    _launch([*TORCHRUN, "-m", "diffalign", "train", recipe, "checkpointing_steps=1", "resume=latest"])
    summary, rows, lora = _result(tiny, "killed")
    assert summary["num_processes"] == 2
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # one log, as if never interrupted
    for a, b in zip(two_rows, rows):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-7) and b["lr"] == a["lr"]
    for k in two_lora:
        torch.testing.assert_close(lora[k], two_lora[k], rtol=1e-5, atol=1e-7)


def test_example_draws_do_not_depend_on_how_the_global_batch_is_split():
    """The offline trainer's generators: example j of micro-step k draws the same noise, timestep and
    caption-dropout value on 1 process x batch 2 as on rank j of 2 processes x batch 1; other
    micro-steps and seeds draw differently."""
    from types import SimpleNamespace

    from diffalign.train.layouts import draw_noise_and_timesteps, draw_uniform
    from diffalign.train.offline import OfflinePreferenceTrainer

    adapter = SimpleNamespace(
        sample_noise=lambda x, g: torch.randn(x.shape, generator=g),
        sample_timesteps=lambda n, g, device=None: torch.randint(0, 1000, (n,), generator=g),
    )

    def draws(seed, batch_size, rank, micro_step):
        trainer = SimpleNamespace(config=SimpleNamespace(seed=seed, batch_size=batch_size),
                                  accelerator=SimpleNamespace(process_index=rank), device=torch.device("cpu"))
        gen = OfflinePreferenceTrainer.generator(trainer, micro_step)
        drop = draw_uniform(batch_size, gen, "cpu")
        noise, t = draw_noise_and_timesteps(adapter, torch.zeros(batch_size, 3, 4, 4), gen)
        return drop, noise, t

    whole = draws(3, 2, 0, micro_step=5)
    split = [draws(3, 1, rank, micro_step=5) for rank in (0, 1)]
    for a, *parts in zip(whole, *split):
        assert torch.equal(a, torch.cat(parts))
    assert not torch.equal(whole[1][0], whole[1][1])  # examples differ
    assert not torch.equal(draws(3, 2, 0, micro_step=6)[1], whole[1])
    assert not torch.equal(draws(4, 2, 0, micro_step=5)[1], whole[1])


@pytest.mark.slow
def test_two_process_checkpoint_resumes_on_one_process(tiny, runs):
    """The step-3 checkpoint of the 2-process run (batch 1 each) resumed on ONE process with batch 2
    (the same global batch) continues exactly like the uninterrupted runs; resuming it with the
    per-process batch unchanged (global batch 1) stops with one line."""
    import shutil

    (_, one_rows, one_lora), (_, two_rows, _) = runs
    ckpt = tiny / "two" / "checkpoints" / "step-000003"
    state = json.loads((ckpt / "state.json").read_text())
    assert (state["num_processes"], state["global_batch"]) == (2, {"batch": 2})
    shutil.copytree(ckpt, tiny / "resumed-copy")
    _launch([sys.executable, "-m", "diffalign", "train", _recipe(tiny, "resumed", batch_size=2),
             f"resume={tiny / 'resumed-copy'}"])
    summary, rows, lora = _result(tiny, "resumed")
    assert summary["num_processes"] == 1
    assert [r["step"] for r in rows] == [4, 5, 6]
    for a, b in zip(one_rows[3:], rows):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6) and b["lr"] == a["lr"]
    for k in one_lora:
        torch.testing.assert_close(lora[k], one_lora[k], rtol=1e-4, atol=1e-6)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WORLD_SIZE", "RANK", "MASTER_"))}
    out = subprocess.run([sys.executable, "-m", "diffalign", "train", _recipe(tiny, "mismatch", batch_size=1),
                          f"resume={ckpt}"], capture_output=True, text=True, timeout=300,
                         env={**base, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert out.returncode != 0
    assert "other global batch sizes (batch 2 -> 1)" in out.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_accelerate_state_checkpoints_resume_on_another_process_count(tiny, runs):
    """``checkpoint_format: accelerate`` (what FSDP / DeepSpeed runs use): every rank writes through
    accelerate's save_state into the hidden folder, renamed once complete; the 2-process run ends
    with the one-process LoRA (export from the gathered state dict), and its step-3 checkpoint
    resumed on ONE process continues exactly."""
    import shutil

    (_, one_rows, one_lora), _ = runs
    _launch([*TORCHRUN, "-m", "diffalign", "train", _recipe(tiny, "acc", batch_size=1), "checkpointing_steps=3",
             "checkpoint_format=accelerate"])
    summary, rows, lora = _result(tiny, "acc")
    assert summary["num_processes"] == 2
    for k in one_lora:
        torch.testing.assert_close(lora[k], one_lora[k], rtol=1e-4, atol=1e-6)
    ckpt = tiny / "acc" / "checkpoints" / "step-000003"
    assert json.loads((ckpt / "state.json").read_text())["format"] == "accelerate"
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl", "random_states_1.pkl"} <= {
        p.name for p in (ckpt / "accelerate_state").iterdir()}
    assert (ckpt / "pytorch_lora_weights.safetensors").exists()
    assert not [p for p in (tiny / "acc" / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    shutil.copytree(ckpt, tiny / "acc-copy")
    _launch([sys.executable, "-m", "diffalign", "train", _recipe(tiny, "acc-resumed", batch_size=2),
             f"resume={tiny / 'acc-copy'}", "checkpoint_format=accelerate"])
    summary, rows, lora = _result(tiny, "acc-resumed")
    assert summary["num_processes"] == 1 and [r["step"] for r in rows] == [4, 5, 6]
    for a, b in zip(one_rows[3:], rows):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6) and b["lr"] == a["lr"]
    for k in one_lora:
        torch.testing.assert_close(lora[k], one_lora[k], rtol=1e-4, atol=1e-6)


def test_a_half_written_accelerate_checkpoint_is_never_picked_up(tmp_path):
    """A killed save leaves only the hidden folder (no state.json in a step folder): resume=latest
    takes the last complete checkpoint, and the next save removes the stale folder."""
    from diffalign.train.checkpoint import list_checkpoints, resolve_resume, save_checkpoint

    root = tmp_path / "checkpoints"
    save_checkpoint(str(tmp_path), 2, {"w": torch.ones(2)})
    (root / ".tmp-step-000003-shards" / "accelerate_state").mkdir(parents=True)  # killed inside save_state
    (root / ".tmp-step-000003-shards" / "accelerate_state" / "model.safetensors").write_bytes(b"partial")
    assert [c.step for c in list_checkpoints(str(tmp_path))] == [2]
    assert resolve_resume(str(tmp_path), "latest").step == 2
    save_checkpoint(str(tmp_path), 4, {"w": torch.ones(2)})
    assert sorted(p.name for p in root.iterdir()) == ["step-000002", "step-000004"]


@pytest.mark.slow
def test_fsdp2_lora_on_cpu_matches_ddp_and_its_sharded_checkpoint_reshards(tmp_path):
    """torch's FSDP2 (fully_shard) runs on CPU with gloo (accelerate does not build it there, so this is
    bench/fsdp2_cpu_check.py, not the trainer): on 2 ranks a LoRA on the tiny UNet trains with the
    same losses and the same full LoRA as DDP, and its 2-shard torch.distributed.checkpoint loads
    into ONE process with the same weights."""
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "fsdp2_cpu_check.py")
    for mode in ("ddp", "fsdp2"):
        _launch([*TORCHRUN, script, mode, str(tmp_path)])
    _launch([*TORCHRUN[:-1], "1", script, "load", str(tmp_path)])
    info = {m: json.loads((tmp_path / f"{m}.json").read_text()) for m in ("ddp", "fsdp2", "load")}
    assert info["ddp"]["world_size"] == info["fsdp2"]["world_size"] == 2 and info["load"]["world_size"] == 1
    assert (info["ddp"]["sharded"], info["fsdp2"]["sharded"]) == ("Parameter", "DTensor")  # really sharded
    assert info["fsdp2"]["losses"] == pytest.approx(info["ddp"]["losses"], rel=1e-5)
    assert len(list(tmp_path.joinpath("dcp").glob("*.distcp"))) == 2
    ddp, fsdp2, load = (load_file(str(tmp_path / f"{m}.safetensors")) for m in ("ddp", "fsdp2", "load"))
    assert max(float(v.abs().max()) for k, v in ddp.items() if "lora_B" in k) > 0  # trained
    for k in ddp:
        torch.testing.assert_close(fsdp2[k], ddp[k], rtol=1e-4, atol=1e-5)
        assert torch.equal(load[k], fsdp2[k])


#: what ``accelerate launch --config_file fsdp2_lora.yaml`` exports, on a machine without GPU (torchrun: real gloo ranks)
FSDP2_CPU = {"ACCELERATE_USE_CPU": "true", "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2",
             "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP", "FSDP_RESHARD_AFTER_FORWARD": "true"}


@pytest.mark.slow
def test_fsdp2_on_cpu_through_the_trainer_matches_ddp_and_resumes_on_one_process(tiny, runs):
    """An FSDP2 config on 2 gloo ranks without GPU: the trainer shards the UNet with torch's fully_shard
    and logs the DDP run's lr, loss and grad norm at every step and ends with its LoRA (gathered from
    the shards); its step-3 checkpoint (torch.distributed.checkpoint, one shard file per rank, renamed
    into place) resumed on ONE process with batch 2 continues like the one-process run."""
    import shutil

    (_, one_rows, one_lora), (_, two_rows, two_lora) = runs
    log = _launch([*TORCHRUN, "-m", "diffalign", "train", _recipe(tiny, "fsdp2", batch_size=1), "checkpointing_steps=3"],
                  **FSDP2_CPU)
    assert "FSDP2 on CPU: torch fully_shard over 2 gloo processes" in log
    summary, rows, lora = _result(tiny, "fsdp2")
    assert (summary["num_processes"], summary["sharded"]) == (2, True)
    assert [r["lr"] for r in rows] == [r["lr"] for r in two_rows]
    for a, b in zip(two_rows, rows):
        for key in ("loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert lora.keys() == two_lora.keys()
    for k in two_lora:
        torch.testing.assert_close(lora[k], two_lora[k], rtol=1e-4, atol=1e-6)
    ckpt = tiny / "fsdp2" / "checkpoints" / "step-000003"
    assert json.loads((ckpt / "state.json").read_text())["format"] == "dcp"
    assert sorted(p.name for p in (ckpt / "dcp").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not [p for p in (tiny / "fsdp2" / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    shutil.copytree(ckpt, tiny / "fsdp2-copy")
    _launch([sys.executable, "-m", "diffalign", "train", _recipe(tiny, "fsdp2-resumed", batch_size=2),
             f"resume={tiny / 'fsdp2-copy'}"])
    summary, rows, lora = _result(tiny, "fsdp2-resumed")
    assert (summary["num_processes"], summary["sharded"]) == (1, False) and [r["step"] for r in rows] == [4, 5, 6]
    for a, b in zip(one_rows[3:], rows):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6) and b["lr"] == a["lr"]
    for k in one_lora:
        torch.testing.assert_close(lora[k], one_lora[k], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_fsdp2_on_cpu_full_fine_tune_exports_the_one_process_pipeline(tiny):
    """Full fine-tuning under FSDP2 on 2 gloo ranks (with fsdp_activation_checkpointing, as the shipped
    fsdp2_full config): the exported pipeline's UNet, gathered from the shards, is the one a single
    process with the doubled batch writes."""
    full = {"lora": "enabled: false", "steps": 2, "lr": 0.01}
    _launch([sys.executable, "-m", "diffalign", "train", _recipe(tiny, "full-one", batch_size=2, **full)])
    _launch([*TORCHRUN, "-m", "diffalign", "train", _recipe(tiny, "full-fsdp2", batch_size=1, **full)],
            **FSDP2_CPU, FSDP_ACTIVATION_CHECKPOINTING="true")
    one, two = (json.loads((tiny / n / "train_summary.json").read_text()) for n in ("full-one", "full-fsdp2"))
    assert (one["num_processes"], two["num_processes"], two["sharded"]) == (1, 2, True)
    unet = "pipeline/unet/diffusion_pytorch_model.safetensors"
    base, a, b = (load_file(str(p)) for p in (tiny / "model/unet/diffusion_pytorch_model.safetensors",
                                                tiny / "full-one" / unet, tiny / "full-fsdp2" / unet))
    assert a.keys() == b.keys() == base.keys()
    assert max(float((a[k] - base[k]).abs().max()) for k in a) > 1e-3  # trained ...
    for k in a:  # ... to the same weights: Adam moves every weight by ~lr on its first steps, so float rounding
        # in near-zero gradients shows at that scale (one element in 36864 at 5.7e-6 seen): bound 0.2 % of lr
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=2e-5)


def test_fsdp2_on_cpu_request_and_its_limits(monkeypatch):
    """FSDP2 on CPU is taken when an FSDP2 config runs several processes without GPU; what it cannot do
    is a one-line error: one process, fsdp_offload_params, a size-based wrap policy, a FSDP1 or
    DeepSpeed config without GPU, a block class the model does not have."""
    from diffalign.train import fsdp_cpu

    for name in [k for k in os.environ if k.startswith(("ACCELERATE_", "FSDP_"))] + list(distributed.WORLD_SIZE_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "has_accelerator_device", lambda: False)
    assert not fsdp_cpu.requested()
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert not fsdp_cpu.requested()  # FSDP1 (accelerate's default version)
    with pytest.raises(RuntimeError, match=r"^the FSDP1 \(fsdp_version: 1\) accelerate config needs GPUs.*fsdp2_lora"):
        distributed.check_engine("offline", hand_synced=False)
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert fsdp_cpu.requested()
    distributed.check_engine("ddpo", hand_synced=True)  # FSDP2 on CPU: every trainer
    with pytest.raises(RuntimeError, match="needs several processes .*torchrun --nproc_per_node N"):
        fsdp_cpu.CpuFsdp2.from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "BasicTransformerBlock, ResnetBlock2D")
    plan = fsdp_cpu.CpuFsdp2.from_env()
    assert (plan.wrap_classes, plan.activation_checkpointing, plan.reshard_after_forward) == (
        ("BasicTransformerBlock", "ResnetBlock2D"), True, True)
    with pytest.raises(ValueError, match=r"names \['BasicTransformerBlock', 'ResnetBlock2D'\], which Linear does not have"):
        plan.shard(torch.nn.Linear(2, 2))  # checked before any collective
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "true")
    with pytest.raises(RuntimeError, match="set fsdp_offload_params: false"):
        fsdp_cpu.CpuFsdp2.from_env()
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "false")
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "SIZE_BASED_WRAP")
    with pytest.raises(RuntimeError, match="fsdp_auto_wrap_policy SIZE_BASED_WRAP is not supported"):
        fsdp_cpu.CpuFsdp2.from_env()
    monkeypatch.setattr(distributed, "has_accelerator_device", lambda: True)
    assert not fsdp_cpu.requested()  # GPUs: accelerate's own FSDP2 plugin
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setattr(distributed, "has_accelerator_device", lambda: False)
    with pytest.raises(RuntimeError, match="DeepSpeed accelerate config needs GPUs"):
        distributed.check_engine("offline", hand_synced=False)
