"""The Python API (the README's "Training from Python"): ``diffalign.train`` with objects, a DPO run on
an in-memory data set, DDPO with a lambda reward, and checkpoints that plain diffusers loads."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import diffalign
from diffalign.config import ConfigError
from diffalign.data import write_pairs_jsonl
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train.metrics import read_metrics


def _pairs(n=4):
    rng = np.random.default_rng(0)
    return [{"caption": f"a photo of thing {i}", "jpg_0": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
             "jpg_1": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "label_0": float(i % 2)} for i in range(n)]


def _dpo_config(tmp_path, name, **kw):
    return {"method": "diffusion_dpo", "output_dir": str(tmp_path / name), "max_steps": 2, "batch_size": 2,
            "progress_bar": False, "lora": {"rank": 4}, "optim": {"lr": 1e-3}, "loss": {"beta": 2500},
            "data": {"resolution": 32}, "cache": {"dir": str(tmp_path / "cache")}, **kw}


def _unet_output(unet, adapter_or_pipe_cond):
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return unet(x, torch.tensor([500]), encoder_hidden_states=adapter_or_pipe_cond).sample


@pytest.mark.slow
def test_dpo_from_python_on_in_memory_pairs(tmp_path):
    pipe = build_tiny_pipeline("sd")
    base = {n: p.detach().clone() for n, p in pipe.unet.named_parameters()}
    # the README example: a list of dicts with Pick-a-Pic's columns, the pipeline object as the model
    validation = {"prompts": ["a photo of thing 1"], "every_steps": 2, "num_inference_steps": 2, "guidance_scale": 1.0}
    result = diffalign.train(_dpo_config(tmp_path, "run", checkpointing_steps=1, validation=validation),
                             dataset=_pairs(), adapter=pipe)
    assert os.listdir(os.path.join(result.output_dir, "validation")) == ["step-000002.png"]  # the evaluate phase
    rows = read_metrics(result.metrics_path)
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    lora = {n: p for n, p in pipe.unet.named_parameters() if "lora_B" in n}
    assert lora and any(float(p.detach().abs().max()) > 0 for p in lora.values())  # lora_B starts at 0: it moved
    assert all(torch.equal(p, base[n]) for n, p in pipe.unet.named_parameters() if n in base)  # frozen weights kept

    # the same rows written as a jsonl data set give the same run (same columns, same numbers)
    write_pairs_jsonl(str(tmp_path / "pairs"), _pairs())
    cfg = _dpo_config(tmp_path, "from_file")
    cfg["data"]["path"] = str(tmp_path / "pairs")
    from_file = read_metrics(diffalign.train(cfg, adapter=build_tiny_pipeline("sd")).metrics_path)
    assert [r["loss"] for r in from_file] == [r["loss"] for r in rows]

    # the final LoRA and every checkpoint folder load into plain diffusers with the adapter's effect
    cond = pipe.encode_prompt("a photo of thing 1", "cpu", 1, False)[0]
    ours = _unet_output(pipe.unet, cond)
    outputs = {}
    for folder in (result.output_dir, *(os.path.join(result.output_dir, "checkpoints", c) for c in ("step-000001", "step-000002"))):
        plain = build_tiny_pipeline("sd")
        plain.load_lora_weights(folder)
        outputs[folder] = _unet_output(plain.unet, cond)
    torch.testing.assert_close(outputs[result.output_dir], ours, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outputs[os.path.join(result.output_dir, "checkpoints", "step-000002")], ours, rtol=1e-4, atol=1e-5)
    first = outputs[os.path.join(result.output_dir, "checkpoints", "step-000001")]
    untrained = _unet_output(build_tiny_pipeline("sd").unet, cond)
    assert not torch.allclose(first, ours) and not torch.allclose(first, untrained)


@pytest.mark.slow
def test_in_memory_datasets_of_every_kind_of_container_train_alike(tmp_path):
    import datasets

    from PIL import Image

    rows = _pairs()
    # a datasets.Dataset with Image columns (PIL in, stored as PNG bytes: lossless)
    hf = datasets.Dataset.from_list([{**r, "jpg_0": Image.fromarray(r["jpg_0"]), "jpg_1": Image.fromarray(r["jpg_1"])}
                                     for r in rows])
    assert isinstance(hf.features["jpg_0"], datasets.Image)
    losses = []
    for name, data in [("list", rows), ("hf", hf), ("torch", _TorchRows(rows))]:
        result = diffalign.train(_dpo_config(tmp_path, name, max_steps=1), dataset=data, adapter=build_tiny_pipeline("sd"))
        losses.append(read_metrics(result.metrics_path)[0]["loss"])
    assert losses[0] == losses[1] == losses[2]


class _TorchRows(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def test_ddpo_with_a_lambda_reward(tmp_path):
    calls = []

    def brightness(images, prompts):
        calls.append((images.detach().clone(), list(prompts)))
        return images.mean(dim=(1, 2, 3))

    config = diffalign.DDPOConfig(output_dir=str(tmp_path / "ddpo"), max_steps=2, batch_size=2, progress_bar=False)
    config.lora.rank, config.optim.lr = 4, 1e-3
    config.prompts.source, config.prompts.items = "list", ["a red circle", "a blue square"]
    config.sampling.num_inference_steps, config.sampling.batch_size, config.sampling.guidance_scale = 3, 2, 2.0
    result = diffalign.train(config, reward=brightness, adapter=build_tiny_pipeline("sd"))
    rows = read_metrics(result.metrics_path)
    assert len(calls) == 2  # one sampling batch per step
    for (images, prompts), row in zip(calls, rows):
        assert images.shape == (2, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
        assert images.std() > 0  # real samples, not a constant
        assert len(prompts) == 2 and set(prompts) <= {"a red circle", "a blue square"}
        assert row["reward_mean"] == pytest.approx(float(images.mean(dim=(1, 2, 3)).mean()), rel=1e-6)


def test_config_and_reward_forms_and_wrong_arguments(tmp_path):
    from diffalign.rewards import CallableReward, as_reward
    from diffalign.train.api import as_config

    # a recipe path with overrides, a dict and a config object give the same config
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("trainer: ddpo\nmax_steps: 7\nsampling:\n  num_inference_steps: 3\n")
    from_path = as_config(str(recipe), ["optim.lr=0.5"])
    from_dict = as_config({"trainer": "ddpo", "max_steps": 7, "sampling": {"num_inference_steps": 3}, "optim": {"lr": 0.5}})
    assert type(from_path) is diffalign.DDPOConfig and from_path == from_dict
    assert as_config(from_dict) is from_dict and as_config(from_dict, ["max_steps=2"]).max_steps == 2

    # a differentiable callable reward passes the gradient to the pixels; a plain one is detached
    pixels = torch.rand(2, 3, 8, 8, requires_grad=True)
    CallableReward(lambda im, p: im.mean(dim=(1, 2, 3)), differentiable=True)(pixels, ["a", "b"]).sum().backward()
    torch.testing.assert_close(pixels.grad, torch.full_like(pixels, 1 / (3 * 8 * 8)))
    assert not as_reward(lambda im, p: im.mean(dim=(1, 2, 3)))(pixels, ["a", "b"]).requires_grad

    images = torch.rand(3, 3, 8, 8)
    both = as_reward({"bright": (lambda im, p: im.mean(dim=(1, 2, 3)), 2.0), "jpeg_compressibility": 0.5})
    expected = 2.0 * images.mean(dim=(1, 2, 3)) + 0.5 * diffalign.load_reward("jpeg_compressibility")(images, ["x"] * 3)
    torch.testing.assert_close(both(images, ["x"] * 3), expected)
    with pytest.raises(TypeError, match="dataset= is preference data for the offline trainer"):
        diffalign.build_trainer({"trainer": "ddpo"}, dataset=_pairs())
    with pytest.raises(TypeError, match="reward= is for the online trainers"):
        diffalign.build_trainer({"method": "diffusion_dpo"}, reward="aesthetic")
    with pytest.raises(ConfigError, match="max_stepz"):
        diffalign.build_trainer({"trainer": "ddpo", "max_stepz": 3})
