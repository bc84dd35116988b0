"""The offline preference trainer on every family's tiny pipeline: every loss trains, resume is
exact, the cache is reused, and the LoRA it writes loads into plain diffusers."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from diffalign.data import DataConfig, write_pairs_jsonl
from diffalign.losses import LOSSES
from diffalign.pipelines import adapter_for
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train.metrics import read_metrics
from diffalign.train.offline import CacheConfig, OfflineConfig, OfflinePreferenceTrainer

IMAGE_SIZE = {"sd": 32, "sdxl": 32, "sd3": 32}
VIDEO = dict(frames=9, size=16)


def _rng_image(rng, size):
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    """One small data set per kind, written in the on-disk formats users have."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    pairs = [{"caption": f"a photo of thing {i}", "jpg_0": _rng_image(rng, 32), "jpg_1": _rng_image(rng, 32),
              "label_0": float(i % 2), "caption_w": f"thing {i} as wanted", "caption_l": f"thing {i} not wanted"}
             for i in range(6)]
    write_pairs_jsonl(str(root / "pairs"), pairs)
    # ranked lists and video pairs as jsonl + media files
    (root / "ranked").mkdir()
    with open(root / "ranked" / "lists.jsonl", "w") as f:
        for i in range(4):
            names = []
            for k in range(3):
                name = f"r{i}_{k}.png"
                from PIL import Image

                Image.fromarray(_rng_image(rng, 32)).save(root / "ranked" / name)
                names.append(name)
            f.write(json.dumps({"caption": f"list {i}", "images": names, "scores": [1.0, 0.5, 0.0]}) + "\n")
    (root / "video").mkdir()
    with open(root / "video" / "pairs.jsonl", "w") as f:
        for i in range(4):
            for v in (0, 1):
                np.save(root / "video" / f"v{i}_{v}.npy",
                        rng.integers(0, 255, (VIDEO["frames"], VIDEO["size"], VIDEO["size"], 3), dtype=np.uint8))
            f.write(json.dumps({"caption": f"video {i}", "video_0": f"v{i}_0.npy", "video_1": f"v{i}_1.npy",
                                "caption_w": f"wanted video {i}", "caption_l": f"unwanted video {i}",
                                "segment_labels": [1, -1, 0] if i % 2 else [0, 1, 1]}) + "\n")
    return root


def _config(tmp_path, data_dirs, family, method, **kw) -> OfflineConfig:
    spec = LOSSES[method]
    if spec.inputs == "pair_segments":
        data = DataConfig(path=str(data_dirs / "video" / "pairs.jsonl"), kind="video_pairs", resolution=VIDEO["size"])
    elif family == "cogvideox":
        # whole-video pairs: the same video files read as pairs
        columns = {"image_0": "video_0", "image_1": "video_1", "label_0": None}
        if spec.conditioning != "shared":
            columns.update(caption_w="caption_w", caption_l="caption_l")
        data = DataConfig(path=str(data_dirs / "video" / "pairs.jsonl"), kind="pairs", media="video",
                          resolution=VIDEO["size"], columns=columns)
    elif spec.inputs == "list":
        data = DataConfig(path=str(data_dirs / "ranked" / "lists.jsonl"), kind="ranked", resolution=32)
    elif spec.inputs == "single":
        data = DataConfig(path=str(data_dirs / "pairs"), kind="unpaired", unpaired_from_pairs=True, resolution=32)
    else:
        columns = {"caption_w": "caption_w", "caption_l": "caption_l"} if spec.conditioning != "shared" else {}
        data = DataConfig(path=str(data_dirs / "pairs"), kind="pairs", resolution=32, columns=columns)
    cfg = OfflineConfig(output_dir=str(tmp_path / "out"), method=method, max_steps=2, batch_size=2,
                        progress_bar=False, data=data, cache=CacheConfig(dir=str(tmp_path / "cache")), **kw)
    cfg.lora.rank = 4
    cfg.optim.lr = 1e-3
    return cfg


OFFLINE_METHODS = [name for name, s in LOSSES.items() if s.inputs not in ("transition", "transition_pair")]


def _combos():
    for family in ("sd", "sdxl", "sd3", "cogvideox"):
        for method in OFFLINE_METHODS:
            inputs = LOSSES[method].inputs
            if family == "cogvideox" and inputs in ("list", "single"):
                continue  # image data kinds; video families train on video pairs
            if family != "cogvideox" and inputs == "pair_segments":
                continue  # segment labels are temporal
            yield family, method


@pytest.mark.parametrize("family,method", list(_combos()))
def test_every_loss_trains_every_family(tmp_path, data_dirs, family, method):
    cfg = _config(tmp_path, data_dirs, family, method)
    adapter = adapter_for(build_tiny_pipeline(family))
    before = {n: p.detach().clone() for n, p in adapter.denoiser.named_parameters()}
    result = OfflinePreferenceTrainer(cfg, adapter=adapter).train()
    rows = read_metrics(result.metrics_path)
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert all(v is None or math.isfinite(v) for v in row.values()), row
    changed = [n for n, p in adapter.denoiser.named_parameters() if "lora" in n and not torch.equal(p, before.get(n, p * 0))]
    assert changed, "no LoRA parameter moved"
    frozen = [n for n, p in adapter.denoiser.named_parameters() if "lora" not in n and n in before]
    assert all(torch.equal(dict(adapter.denoiser.named_parameters())[n], before[n]) for n in frozen)
    assert os.path.exists(result.lora_path)


def _run(tmp_path, data_dirs, steps, resume=None, checkpointing_steps=0):
    cfg = _config(tmp_path, data_dirs, "sd", "diffusion_dpo", checkpointing_steps=checkpointing_steps)
    cfg.max_steps, cfg.resume, cfg.batch_size = steps, resume, 2
    cfg.gradient_accumulation_steps = 2
    trainer = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    result = trainer.train()
    return read_metrics(result.metrics_path), trainer.adapter.lora_state_dict()


def test_resume_reproduces_the_uninterrupted_run(tmp_path, data_dirs):
    full, full_lora = _run(tmp_path / "a", data_dirs, steps=5)
    _run(tmp_path / "b", data_dirs, steps=2, checkpointing_steps=1)  # "interrupted" after step 2
    resumed, resumed_lora = _run(tmp_path / "b", data_dirs, steps=5, resume="latest")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5]  # one log, as if never interrupted
    for a, b in zip(full, resumed):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
        assert a["implicit_acc"] == b["implicit_acc"]
    for k in full_lora:
        torch.testing.assert_close(full_lora[k], resumed_lora[k], rtol=1e-5, atol=1e-7)
    # epochs wrap (6 pairs / (2 x 1) = 3 batches per epoch; 2 micro-batches per step)
    assert full[-1]["epoch"] == 3


def test_cache_is_built_once_and_keyed_by_data(tmp_path, data_dirs):
    cfg = _config(tmp_path, data_dirs, "sd", "diffusion_dpo")
    t1 = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    folders = os.listdir(tmp_path / "cache")
    assert len(folders) == 1 and os.path.exists(tmp_path / "cache" / folders[0] / "complete.json")
    shard = tmp_path / "cache" / folders[0] / "shard-00000.safetensors"
    mtime = shard.stat().st_mtime_ns
    t2 = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    assert shard.stat().st_mtime_ns == mtime  # reused, not rewritten
    b1, b2 = t1.get_batch([0, 1], 0), t2.get_batch([0, 1], 0)
    torch.testing.assert_close(b1["w"], b2["w"])
    # a different resolution is a different cache
    cfg.data.resolution = 16
    OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    assert len(os.listdir(tmp_path / "cache")) == 2


def test_cached_and_uncached_batches_agree(tmp_path, data_dirs):
    cfg = _config(tmp_path, data_dirs, "sd", "diffusion_dpo")
    cached = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    cfg.cache.enabled = False
    raw = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    a, b = cached.get_batch([0, 1], 0), raw.get_batch([0, 1], 0)
    assert set(a) == set(b)
    torch.testing.assert_close(a["cond.prompt_embeds"], b["cond.prompt_embeds"])
    assert a["w"].shape == b["w"].shape


def test_bad_loss_argument_and_wrong_data_kind_are_clear(tmp_path, data_dirs):
    cfg = _config(tmp_path, data_dirs, "sd", "diffusion_dpo")
    cfg.loss = {"betta": 1.0}
    with pytest.raises(ValueError, match="loss.betta"):
        OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    cfg = _config(tmp_path, data_dirs, "sd", "rankdpo")
    cfg.data.kind = "pairs"
    with pytest.raises(ValueError, match="data.kind=ranked"):
        OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    cfg = _config(tmp_path, data_dirs, "sd", "dcpo")
    cfg.data.columns = {}
    trainer = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    with pytest.raises(ValueError, match="caption_w/caption_l"):
        trainer.train()


def test_train_command_lora_loads_into_plain_diffusers(tmp_path, data_dirs):
    from diffusers import DiffusionPipeline

    from diffalign.cli import main

    model = tmp_path / "model"
    build_tiny_pipeline("sd").save_pretrained(model)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"method: diffusion_dpo\noutput_dir: {tmp_path / 'run'}\nmax_steps: 3\nbatch_size: 2\nprogress_bar: false\n"
        f"model:\n  pretrained: {model}\nlora:\n  rank: 4\noptim:\n  lr: 0.01\n"
        f"data:\n  path: {data_dirs / 'pairs'}\n  resolution: 32\ncache:\n  dir: {tmp_path / 'cache'}\n"
    )
    assert main(["train", str(recipe), "loss.beta=2500"]) == 0
    saved = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert saved["lora"].endswith("pytorch_lora_weights.safetensors")

    def sample(pipe):
        return pipe("a photo of thing 1", num_inference_steps=2, guidance_scale=1.0, height=32, width=32,
                    generator=torch.Generator().manual_seed(0), output_type="np").images

    base = DiffusionPipeline.from_pretrained(model)
    tuned = DiffusionPipeline.from_pretrained(model)
    tuned.load_lora_weights(str(tmp_path / "run"))
    assert np.abs(sample(base) - sample(tuned)).max() > 1e-4


def test_two_processes_with_accelerate_launch(tmp_path, data_dirs):
    """`accelerate launch --num_processes 2 -m diffalign train` on CPU (gloo): both ranks train,
    gradients are synchronised (the trainer checks the ranks' weights agree) and one LoRA is written."""
    import subprocess
    import sys

    model = tmp_path / "model"
    build_tiny_pipeline("sd").save_pretrained(model)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"method: diffusion_dpo\noutput_dir: {tmp_path / 'run'}\nmax_steps: 2\nbatch_size: 1\nprogress_bar: false\n"
        f"model:\n  pretrained: {model}\nlora:\n  rank: 4\noptim:\n  lr: 0.01\n"
        f"data:\n  path: {data_dirs / 'pairs'}\n  resolution: 32\ncache:\n  dir: {tmp_path / 'cache'}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", "-m", "diffalign", "train", str(recipe)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_metrics(str(tmp_path / "run" / "logs" / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    assert (tmp_path / "run" / "pytorch_lora_weights.safetensors").exists()
