"""Speed levers of the offline trainer that must not change what is trained: glibc malloc reuse on
CPU, and dropping the VAE / text encoders' weights once latents and text are cached."""
from __future__ import annotations

import json
import os
import resource
import sys

import numpy as np
import pytest
import torch

from diffalign.data import DataConfig, write_pairs_jsonl
from diffalign.pipelines import adapter_for
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train.offline import CacheConfig, OfflineConfig, OfflinePreferenceTrainer
from diffalign.utils import memory


#: run in a fresh interpreter (a clean malloc history, whatever ran before in this process): a training-like
#: step allocates ten 4 MiB buffers, touches every page and frees them all; prints the page faults of 5 steps
#: after a warm-up step. Loads diffalign/utils/memory.py by path so that no torch import blurs the count.
_FAULTS = """
import ctypes, importlib.util, resource, sys
spec = importlib.util.spec_from_file_location("memory", sys.argv[1])
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)
if sys.argv[2] == "1":
    assert memory.reuse_freed_memory() and memory.reuse_freed_memory()  # applied, idempotent
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
size = 4 << 20
def step():
    buffers = [libc.malloc(size) for _ in range(10)]
    for b in buffers:
        ctypes.memset(b, 1, size)
    for b in buffers:
        libc.free(b)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _step_faults(apply: bool) -> int:
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _FAULTS, memory.__file__, "1" if apply else "0"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings (Linux only)")
def test_reuse_freed_memory_stops_the_page_faults_of_reallocation():
    pages = 5 * 10 * (4 << 20) // 4096  # 51,200 pages written in the 5 measured steps
    default, reused = _step_faults(False), _step_faults(True)
    # glibc's defaults hand the 40 MiB freed at the end of each step back to the kernel (trim threshold),
    # so every page faults again on the next step; with the settings the heap keeps it and nothing faults
    assert default > pages // 2, default
    assert reused < pages // 100, reused


def _setup(tmp_path):
    rng = np.random.default_rng(0)
    write_pairs_jsonl(str(tmp_path / "pairs"), [
        {"caption": f"a photo of thing {i}", "jpg_0": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
         "jpg_1": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "label_0": 1.0} for i in range(4)])
    model = tmp_path / "model"
    if not model.exists():
        build_tiny_pipeline("sd").save_pretrained(model)

    def config(name, free_encoders=True, **kw):
        cfg = OfflineConfig(output_dir=str(tmp_path / name), method="diffusion_dpo", max_steps=2, batch_size=2,
                            progress_bar=False, data=DataConfig(path=str(tmp_path / "pairs"), resolution=32),
                            cache=CacheConfig(dir=str(tmp_path / "cache"), free_encoders=free_encoders), **kw)
        cfg.model.pretrained = str(model)
        cfg.lora.rank, cfg.optim.lr = 4, 1e-2
        return cfg
    return config


def _on_meta(module) -> bool:
    return all(p.device.type == "meta" for p in module.parameters())


@pytest.mark.slow  # two tiny training runs (~3 s)
def test_dropping_the_encoders_frees_them_and_trains_the_same(tmp_path):
    config = _setup(tmp_path)
    dropped = OfflinePreferenceTrainer(config("a"))
    pipe = dropped.adapter.pipe
    assert _on_meta(pipe.vae) and _on_meta(pipe.text_encoder) and not _on_meta(pipe.unet)
    kept = OfflinePreferenceTrainer(config("b", free_encoders=False))
    assert not _on_meta(kept.adapter.pipe.vae)
    runs = [t.train() for t in (dropped, kept)]
    losses = [[r["loss"] for r in map(json.loads, open(run.metrics_path))] for run in runs]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    # kept where later work runs them: validation sampling, a pipeline export, a model given from Python
    val = config("c")
    val.validation.prompts, val.validation.every_steps = ["a photo of thing 1"], 1
    assert not _on_meta(OfflinePreferenceTrainer(val).adapter.pipe.vae)
    assert not _on_meta(OfflinePreferenceTrainer(config("d", save="both")).adapter.pipe.text_encoder)
    given = OfflinePreferenceTrainer(config("e"), adapter=adapter_for(build_tiny_pipeline("sd")))
    assert not _on_meta(given.adapter.pipe.vae)


@pytest.mark.slow  # three tiny pipelines, a forward + backward each (~1-2 s)
def test_selective_checkpointing_marks_only_the_named_blocks_and_keeps_gradients():
    from diffalign.pipelines import adapter_for

    def loss_and_grads(blocks):
        adapter = adapter_for(build_tiny_pipeline("sd"))
        unet = adapter.denoiser.train()
        if blocks is not None:
            adapter.enable_gradient_checkpointing(blocks)
        torch.manual_seed(0)
        x, cond = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32)
        loss = unet(x, torch.tensor([10, 500]), encoder_hidden_states=cond).sample.square().mean()
        loss.backward()
        flags = {n: m.gradient_checkpointing for n, m in unet.named_modules() if n and hasattr(m, "gradient_checkpointing")}
        return loss.detach(), {n: p.grad.clone() for n, p in unet.named_parameters()}, flags

    plain_loss, plain_grads, plain_flags = loss_and_grads(None)
    loss, grads, flags = loss_and_grads(["up_blocks.1"])
    assert not any(plain_flags.values())
    on = sorted(n for n, f in flags.items() if f)
    assert on and all(n == "up_blocks.1" or n.startswith("up_blocks.1.") for n in on)
    assert torch.allclose(loss, plain_loss)
    assert all(torch.allclose(grads[n], plain_grads[n], atol=1e-6, rtol=1e-4) for n in grads)
    with pytest.raises(ValueError, match=r"model.checkpoint_blocks: \['up_blocks.9'\] are not sub-modules"):
        adapter_for(build_tiny_pipeline("sd")).enable_gradient_checkpointing(["up_blocks.9"])


def test_checkpoint_blocks_auto_rule_with_the_measured_settings():
    """``model.checkpoint_blocks: auto`` (the default): SD1.5's UNet (4 down / 4 up blocks) with 2 pairs
    per step checkpoints nothing at 128 px (2 x 16 x 16 = 512 latent positions: no checkpointing stayed
    under diffusers' script's peak) and its two full-resolution blocks at 256 px (2 x 32 x 32 = 2048:
    it went over); a transformer gets nothing; a given list or full checkpointing win over auto."""
    from types import SimpleNamespace

    from diffalign.pipelines.checkpointing import (AUTO_MIN_POSITIONS, checkpoint_blocks_value,
                                                   resolve_checkpoint_blocks)
    from diffalign.data import DataConfig
    from diffalign.train.offline import OfflinePreferenceTrainer

    unet = torch.nn.Module()
    unet.down_blocks, unet.up_blocks = torch.nn.ModuleList([torch.nn.Identity()] * 4), torch.nn.ModuleList([torch.nn.Identity()] * 4)
    sd15 = SimpleNamespace(latent_shape=lambda h, w, f=None: (4, h // 8, w // 8))  # the SD VAE's factor 8

    def positions(resolution, batch):
        trainer = SimpleNamespace(adapter=sd15, data_config=DataConfig(resolution=resolution),
                                  config=SimpleNamespace(batch_size=batch))
        return OfflinePreferenceTrainer.latent_positions(trainer)

    assert (positions(128, 2), positions(256, 2), positions(512, 16)) == (512, 2048, 65536)
    assert positions((256, 128), 2) == 1024  # [height, width]: 2 x 32 x 16
    assert AUTO_MIN_POSITIONS == 1024
    assert resolve_checkpoint_blocks("auto", False, unet, positions(128, 2)) is None
    assert resolve_checkpoint_blocks("auto", False, unet, positions(128, 4)) == ["down_blocks.0", "up_blocks.3"]
    assert resolve_checkpoint_blocks("auto", False, unet, positions(256, 2)) == ["down_blocks.0", "up_blocks.3"]
    assert resolve_checkpoint_blocks("auto", False, unet, positions(256, 1)) == ["down_blocks.0", "up_blocks.3"]  # 1024
    assert resolve_checkpoint_blocks("auto", False, unet, positions(248, 1)) is None  # 31 x 31 = 961
    assert resolve_checkpoint_blocks("auto", False, unet, None) is None  # online trainers: size not fixed
    assert resolve_checkpoint_blocks("auto", False, torch.nn.Linear(2, 2), positions(512, 16)) is None  # no UNet blocks
    assert resolve_checkpoint_blocks("auto", True, unet, positions(128, 2)) == []  # everywhere
    assert resolve_checkpoint_blocks(["up_blocks.1"], True, unet, positions(128, 2)) == ["up_blocks.1"]
    assert resolve_checkpoint_blocks([], False, unet, positions(512, 16)) is None
    assert [checkpoint_blocks_value(v) for v in ("auto", "none", None, ["down_blocks.0"])] == ["auto", [], [], ["down_blocks.0"]]
    with pytest.raises(ValueError, match="expected auto, none or a list"):
        checkpoint_blocks_value("down_blocks.0")


@pytest.mark.slow  # two tiny trainers built (~13 s on a loaded 2-core machine)
def test_offline_trainer_applies_checkpoint_blocks_auto_from_resolution_and_batch(tmp_path):
    """The default ``auto`` in the product trainer: the tiny SD (VAE factor 2) at 32 px with 2 pairs is
    2 x 16 x 16 = 512 latent positions -> nothing checkpointed; at 64 px 2 x 32 x 32 = 2048 -> only the
    highest-resolution down and up blocks."""
    config = _setup(tmp_path)

    def flagged(resolution):
        cfg = config(f"r{resolution}")
        cfg.data.resolution = resolution
        trainer = OfflinePreferenceTrainer(cfg)
        unet = trainer.adapter.denoiser
        last_up = f"up_blocks.{len(unet.up_blocks) - 1}"
        on = {n for n, m in unet.named_modules() if n and getattr(m, "gradient_checkpointing", False)}
        return trainer.latent_positions(), on, last_up

    positions, on, _ = flagged(32)
    assert positions == 512 and not on
    positions, on, last_up = flagged(64)
    assert positions == 2048 and on
    assert all(n.split(".")[:2] in (["down_blocks", "0"], last_up.split(".")) for n in on)
    assert {"down_blocks.0", last_up} <= on
