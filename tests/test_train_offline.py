"""The offline preference trainer on every family's tiny pipeline: every loss gets the errors its
input layout defines and its gradient reaches the LoRA, the loop trains each data kind, resume is
exact, the cache is reused and agrees with raw images, and the LoRA it writes loads into plain diffusers."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os

import numpy as np
import pytest
import torch

from diffalign.data import DataConfig, write_pairs_jsonl
from diffalign.losses import INPUT_LAYOUTS, LOSSES
from diffalign.pipelines import adapter_for
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train.encoding import conditioning
from diffalign.train.metrics import read_metrics
from diffalign.train.offline import CacheConfig, OfflineConfig, OfflinePreferenceTrainer

IMAGE_SIZE = {"sd": 32, "sdxl": 32, "sd3": 32, "flux": 32, "qwenimage": 32, "flux2": 32, "zimage": 32}
VIDEO_FAMILIES = ("cogvideox", "wan", "hunyuanvideo15", "ltx2")
#: families added after the fast matrix was sized: their cases run in the slow suite
SLOW_FAMILIES = ("flux", "wan", "qwenimage", "flux2", "zimage", "hunyuanvideo15", "ltx2")
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
    elif family in VIDEO_FAMILIES:
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


OFFLINE_METHODS = [name for name in LOSSES.names() if INPUT_LAYOUTS.get(LOSSES[name].inputs).errors is not None]


def _combos():
    for family in ("sd", "sdxl", "sd3", "cogvideox", "flux", "wan", "qwenimage", "flux2", "zimage", "hunyuanvideo15",
                   "ltx2"):
        for method in OFFLINE_METHODS:
            inputs = LOSSES[method].inputs
            if family in VIDEO_FAMILIES and inputs in ("list", "single"):
                continue  # image data kinds; video families train on video pairs
            if family not in VIDEO_FAMILIES and inputs == "pair_segments":
                continue  # segment labels are temporal
            yield pytest.param(family, method, marks=pytest.mark.slow) if family in SLOW_FAMILIES else (family, method)


def _adapter(family: str):
    adapter = adapter_for(build_tiny_pipeline(family))
    if family in SLOW_FAMILIES:
        adapter.max_sequence_length = 16  # short text sequences keep the tiny runs fast
    return adapter


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _one_by_one(adapter, x, noise, t, cond, reference: bool):
    """Per sample, each on its own: add_noise -> network -> target (the definition of the training
    forward, written out independently of ``training_errors``). Returns (predictions, targets)."""
    preds, targets = [], []
    with torch.no_grad(), adapter.reference() if reference else contextlib.nullcontext():
        for i in range(x.shape[0]):
            xi, ni, ti = x[i : i + 1], noise[i : i + 1], t[i : i + 1]
            preds.append(adapter.forward(adapter.add_noise(xi, ni, ti), ti, cond[i : i + 1]))
            targets.append(adapter.training_target(xi, ni, ti))
    return torch.cat(preds), torch.cat(targets)


def _mse(pred, target, segments=None):
    err = (pred.float() - target.float()) ** 2
    chunks = err.tensor_split(segments, dim=1) if segments else [err]
    out = torch.stack([c.flatten(1).mean(1) for c in chunks], 1)
    return out if segments else out[:, 0]


def _expected_inputs(adapter, batch, spec, generator):
    """The loss arguments of one offline step, computed sample by sample from the layout's definition:
    noise then timesteps drawn from ``generator``; pairs share them; reference = LoRA disabled."""
    cond = conditioning(batch)
    out = {}
    if spec.inputs in ("single", "list"):
        x = batch["x"]
        k = x.shape[1] if spec.inputs == "list" else 1
        flat = x.flatten(0, 1) if spec.inputs == "list" else x
        noise = adapter.sample_noise(flat, generator)
        t = adapter.sample_timesteps(x.shape[0], generator).repeat_interleave(k)
        cond = cond.repeat_interleave(k)
        for name, ref in (("policy", False), ("ref", True)):
            out[name] = _mse(*_one_by_one(adapter, flat, noise, t, cond, ref)).view(x.shape[0], k).squeeze(1)
        out.update({"desirable": batch["desirable"]} if spec.inputs == "single" else {"scores": batch["scores"]})
        return out
    segmented = spec.inputs == "pair_segments"
    first, second = ("v0", "v1") if segmented else ("w", "l")
    noise = adapter.sample_noise(batch[first], generator)
    t = adapter.sample_timesteps(batch[first].shape[0], generator)
    if spec.inputs == "winner":
        return {"policy_w": _mse(*_one_by_one(adapter, batch["w"], noise, t, cond, False))}
    cond_0, cond_1 = (cond, cond) if spec.conditioning == "shared" else (conditioning(batch, "cond_w"), conditioning(batch, "cond_l"))
    segments = batch["segment_labels"].shape[1] if segmented else None
    names = ("0", "1") if segmented else ("w", "l")
    for role, ref in (("policy", False), ("ref", True)):
        pred_w, target_w = _one_by_one(adapter, batch[first], noise, t, cond_0, ref)
        out[f"{role}_{names[0]}"] = _mse(pred_w, target_w, segments)
        out[f"{role}_{names[1]}"] = _mse(*_one_by_one(adapter, batch[second], noise, t, cond_1, ref), segments)
        out[f"{role}_pred_w"], out["target_w"] = pred_w, target_w
    out.update(segment_labels=batch["segment_labels"]) if segmented else out.update(soft_label=batch["soft_labels"])
    return out


def _recording(fn, calls):
    @functools.wraps(fn)  # keeps the signature the trainer reads the argument names from
    def record(*args, **kwargs):
        calls.append(kwargs)
        return fn(*args, **kwargs)

    return record


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("family,method", list(_combos()))
def test_each_loss_gets_its_inputs_on_each_family(tmp_path, data_dirs, shared_cache, family, method):
    """One offline step of every loss on every family it applies to: the loss function receives
    exactly the errors its input layout defines (recomputed here sample by sample), and its loss
    reaches every LoRA parameter it should and no other parameter."""
    cfg = _config(tmp_path, data_dirs, family, method)
    cfg.cache.dir = shared_cache
    trainer = OfflinePreferenceTrainer(cfg, adapter=_adapter(family))
    adapter, spec = trainer.adapter, trainer.spec
    with torch.no_grad():  # a LoRA that matters, so policy and reference differ
        for name, p in adapter.denoiser.named_parameters():
            if "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=_seeded(len(name))))
    calls = []
    trainer.spec = dataclasses.replace(spec, fn=_recording(spec.fn, calls))
    batch = trainer.get_batch([0, 1], 0)
    loss, stats = trainer.compute_loss(batch, _seeded(7))
    (got,) = calls

    expected = _expected_inputs(adapter, batch, spec, _seeded(7))
    wanted = {name for name in spec.parameters if name in expected}
    assert {k: got.pop(k) for k in spec.defaults} == dict(spec.defaults)  # e.g. DCPO's beta 500
    if "num_train_timesteps" in spec.parameters:
        assert got.pop("num_train_timesteps") == 1000
    assert set(got) == wanted
    for name, value in got.items():
        # one sample at a time vs the batched forward: same math, other reduction/conv blocking (with
        # several threads per-element predictions differ by up to ~1e-5; a wrong noise/caption by ~1)
        torch.testing.assert_close(value.float(), expected[name].float(), rtol=1e-4, atol=1e-5, msg=name)
        if name.startswith("ref"):
            assert not value.requires_grad, name
    assert all(got[n].requires_grad for n in got if n.startswith("policy"))
    assert loss.ndim == 0 and math.isfinite(loss.item()) and stats["loss"] == pytest.approx(loss.item())
    pairs = [(n, "ref" + n[len("policy"):]) for n in got if n.startswith("policy") and "ref" + n[len("policy"):] in got]
    assert bool(pairs) == spec.needs_reference
    assert all((got[pol] - got[ref]).abs().max() > 1e-6 for pol, ref in pairs)  # the reference is another network

    loss.backward()
    named = dict(adapter.denoiser.named_parameters())
    lora = [n for n, p in named.items() if p.requires_grad]
    assert lora and all("lora_" in n for n in lora)
    assert any(named[n].grad is not None and named[n].grad.abs().sum() > 0 for n in lora)
    assert all(p.grad is None for n, p in named.items() if "lora_" not in n)


@pytest.mark.parametrize("family,method", [("sd", "kto"), ("sdxl", "rankdpo"), ("sd3", "flow_dpo"), ("cogvideox", "dense_dpo"),
                                           ("flux", "diffusion_dpo"), ("wan", "dense_dpo"), ("qwenimage", "diffusion_dpo"),
                                           ("flux2", "diffusion_dpo"), ("zimage", "flow_dpo"),
                                           ("hunyuanvideo15", "dense_dpo"), ("ltx2", "dense_dpo")])
@pytest.mark.slow
def test_offline_training_end_to_end(tmp_path, data_dirs, family, method):
    """The whole loop (data kinds unpaired, ranked, pairs, video pairs; one per family): steps logged,
    finite metrics, the LoRA moved, frozen weights unchanged, the LoRA file written."""
    cfg = _config(tmp_path, data_dirs, family, method)
    adapter = _adapter(family)
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


def _run(tmp_path, data_dirs, steps, resume=None, checkpointing_steps=0, family="sd", method="diffusion_dpo"):
    cfg = _config(tmp_path, data_dirs, family, method, checkpointing_steps=checkpointing_steps)
    cfg.max_steps, cfg.resume, cfg.batch_size = steps, resume, 2
    cfg.gradient_accumulation_steps = 2
    trainer = OfflinePreferenceTrainer(cfg, adapter=_adapter(family))
    result = trainer.train()
    return read_metrics(result.metrics_path), trainer.adapter.lora_state_dict()


@pytest.mark.slow
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


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run_on_video_dense_dpo(tmp_path, data_dirs):
    """The same on LTX-2 (the latest video family) with DenseDPO's per-segment video pairs."""
    run = functools.partial(_run, data_dirs=data_dirs, family="ltx2", method="dense_dpo")
    full, full_lora = run(tmp_path / "a", steps=3)
    run(tmp_path / "b", steps=1, checkpointing_steps=1)
    resumed, resumed_lora = run(tmp_path / "b", steps=3, resume="latest")
    assert [r["step"] for r in resumed] == [1, 2, 3]
    for a, b in zip(full, resumed):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
    for k in full_lora:
        torch.testing.assert_close(full_lora[k], resumed_lora[k], rtol=1e-5, atol=1e-7)


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


@pytest.mark.slow
def test_cached_and_uncached_batches_agree(tmp_path, data_dirs):
    """Training from the latent cache and from raw images gives the same batch and the same loss.

    The two paths draw the VAE posterior sample from ``seed * 65537 + k``, k the first index of the
    cache's encode chunk or the micro-step; with chunks of one batch both use k = 0 for micro-step 0.
    Same inputs, same ops, same order on CPU: equal bit for bit (tolerance 0); any other value would
    mean the cache stored something else (dtype, order, a missing key)."""
    cfg = _config(tmp_path, data_dirs, "sd", "diffusion_dpo")
    cfg.cache.encode_batch_size = cfg.batch_size
    cached = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    cfg.cache.enabled = False
    raw = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    assert cached.cache is not None and raw.cache is None
    a, b = cached.get_batch([0, 1], 0), raw.get_batch([0, 1], 0)
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    loss_a, stats_a = cached.compute_loss(a, _seeded(3))
    loss_b, stats_b = raw.compute_loss(b, _seeded(3))
    assert loss_a.item() == loss_b.item() and stats_a == stats_b
    assert stats_a["policy_w_err"] != stats_a["policy_l_err"]  # real, distinct errors were compared


def test_bad_loss_argument_and_wrong_data_kind_are_clear(tmp_path, data_dirs):
    cfg = _config(tmp_path, data_dirs, "sd", "diffusion_dpo")
    cfg.loss = {"betta": 1.0}
    with pytest.raises(ValueError, match="loss.betta"):
        OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    cfg = _config(tmp_path, data_dirs, "sd", "rankdpo")
    cfg.data.kind = "pairs"
    with pytest.raises(ValueError, match="data.kind=ranked"):
        OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    cfg.method = "d3po"
    with pytest.raises(ValueError, match="d3po needs rollouts"):
        OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    cfg = _config(tmp_path, data_dirs, "sd", "dcpo")
    cfg.data.columns = {}
    trainer = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    with pytest.raises(ValueError, match="caption_w/caption_l"):
        trainer.train()


@pytest.mark.slow
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


@pytest.mark.slow
def test_same_seed_same_run_whatever_ran_before(tmp_path, data_dirs):
    """The LoRA initialisation draws from the config's seed, not from the global generator's state:
    two runs with one seed are identical even when other work drew random numbers before (the demo
    samples before it trains), and another seed gives another LoRA."""

    def lora_after_two_steps(seed: int, draws_before: int, name: str):
        adapter = adapter_for(build_tiny_pipeline("sd"))  # (seeds the global generator itself)
        torch.randn(draws_before)  # work done before the trainer (sampling, other runs)
        cfg = _config(tmp_path / name, data_dirs, "sd", "diffusion_dpo", seed=seed)
        trainer = OfflinePreferenceTrainer(cfg, adapter=adapter)
        result = trainer.train()
        return read_metrics(result.metrics_path), trainer.adapter.lora_state_dict()

    rows_a, lora_a = lora_after_two_steps(3, 10, "a")
    rows_b, lora_b = lora_after_two_steps(3, 777, "b")
    _, lora_c = lora_after_two_steps(4, 10, "c")
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert [r["grad_norm"] for r in rows_a] == [r["grad_norm"] for r in rows_b]
    assert all(torch.equal(lora_a[k], lora_b[k]) for k in lora_a)
    assert any(not torch.equal(lora_a[k], lora_c[k]) for k in lora_a)


@pytest.mark.parametrize("family,method", [("cogvideox", "dense_dpo"), ("sdxl", "diffusion_dpo")])
def test_training_at_a_non_square_size(tmp_path, data_dirs, family, method):
    """``data.resolution: [height, width]`` (CogVideoX's 480x720 in miniature): the stored square
    clips/images are resized to cover 16x24 and centre-cropped, the latents keep that aspect, the
    auto-checkpointing estimate counts height x width, and a step trains the LoRA."""
    cfg = _config(tmp_path, data_dirs, family, method)
    cfg.data.resolution = (16, 24)
    if family in VIDEO_FAMILIES:  # as the real-size video recipes: a given adapter gets the VAE switch too
        cfg.model.vae_slicing = True  # (tiling needs the real VAE's tile sizes, not the tiny one's)
    trainer = OfflinePreferenceTrainer(cfg, adapter=_adapter(family))
    adapter = trainer.adapter
    if family in VIDEO_FAMILIES:
        assert adapter.vae.use_slicing
    latent = adapter.latent_shape(16, 24, VIDEO["frames"] if family in VIDEO_FAMILIES else None)
    assert latent[-1] * 2 == latent[-2] * 3  # the 2:3 aspect survives into latent space
    assert trainer.latent_positions() == cfg.batch_size * math.prod(latent[1:])
    result = trainer.train()
    rows = read_metrics(result.metrics_path)
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    example = trainer.dataset[0]
    pixels = [v for v in vars(example).values() if isinstance(v, torch.Tensor) and v.ndim >= 3]
    assert pixels and all(tuple(p.shape[-2:]) == (16, 24) for p in pixels)
    lora_b = [p for n, p in adapter.denoiser.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # lora_B starts at zero: the steps moved it


def test_data_resolution_reads_height_by_width():
    from diffalign.config import ConfigError, load_config

    def resolution(value):
        return load_config(OfflineConfig, None, [f"data.resolution={value}"]).data

    assert resolution("480x720").size == (480, 720) and resolution("480x720").resolution == (480, 720)
    assert resolution("[480,720]").resolution == (480, 720)
    assert resolution("[64,64]").resolution == 64  # square: the plain side, so caches keep their keys
    assert resolution("256").size == (256, 256)
    for bad in ("0", "[1,2,3]", "abc", "true", "[32.5,2]"):
        with pytest.raises(ConfigError, match="data.resolution"):
            resolution(bad)
