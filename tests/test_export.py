"""LoRA export formats, merged pipelines, the model card and the Hub upload path (offline)."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from diffalign.export import export, export_lora, export_merged, read_run_config
from diffalign.export.card import model_card, write_model_card
from diffalign.export.hub import HubUploadError, push_folder
from family_checks import PROMPTS, lora_adapter, seeded
from diffalign.pipelines.tiny import build_tiny_pipeline

# ComfyUI's LoRA loader (comfy/lora.py), restated: ``model_lora_keys_unet`` maps, for every weight
# key K of the diffusers UNet, ``lora_unet_<K without .weight, . -> _>`` and
# ``[unet.]<K with .to_ -> .processor.to_, to_out.0 -> to_out>``; for SD3 ``transformer.<K>``.
# ``load_lora`` then reads, per mapped name X, ``X.lora_up.weight`` / ``X.lora_down.weight``,
# ``X_lora.up.weight``, ``X.lora_B.weight`` / ``X.lora_A.weight``, ``X.lora.up.weight`` /
# ``X.lora.down.weight`` and ``X.alpha``; any other key is reported "lora key not loaded".
_COMFY_SUFFIXES = [(".lora_up.weight", ".lora_down.weight"), ("_lora.up.weight", "_lora.down.weight"),
                   (".lora_B.weight", ".lora_A.weight"), (".lora.up.weight", ".lora.down.weight")]


def comfy_key_map(denoiser, family: str) -> set[str]:
    names = set()
    for key in denoiser.state_dict():
        if not key.endswith(".weight") or "lora_" in key:
            continue
        base = key[: -len(".weight")].replace(".base_layer", "")  # a LoRA-wrapped layer's own weight
        if family == "sd3":
            names.add(f"transformer.{base}")
            continue
        names.add("lora_unet_" + base.replace(".", "_"))
        diffusers_key = base.replace(".to_", ".processor.to_")
        if diffusers_key.endswith(".to_out.0"):
            diffusers_key = diffusers_key[:-2]
        names.update({diffusers_key, "unet." + diffusers_key})
    return names


def comfy_unloaded_keys(lora: dict, key_map: set[str]) -> list[str]:
    loaded = set()
    for x in key_map:
        for up, down in _COMFY_SUFFIXES:
            if x + up in lora:
                loaded.update({x + up, x + down})
        if x + ".alpha" in lora:
            loaded.add(x + ".alpha")
    return sorted(set(lora) - loaded)


@pytest.fixture(scope="module")
def sd_run(tmp_path_factory):
    """A tiny SD 'run folder': the trained LoRA (rank 4, alpha 8) and its config."""
    out = tmp_path_factory.mktemp("sd_run")
    adapter, _ = lora_adapter("sd")
    adapter.save_lora(out)
    (out / "config.yaml").write_text("trainer: offline\nmax_steps: 3\nmodel:\n  pretrained: org/base-model\n  family: sd\n")
    return adapter, out


def test_kohya_keys_and_alphas(sd_run):
    adapter, out = sd_run
    path = export_lora(str(out), "kohya")
    assert path == str(out / "exports" / "lora_kohya.safetensors")
    kohya = load_file(path)
    diffusers = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert all(k.startswith("lora_unet_") for k in kohya)
    modules = {k.rsplit(".", 1)[0] for k in kohya if k.endswith(".alpha")}
    assert len(modules) * 3 == len(kohya) and len(modules) * 2 == len(diffusers)
    assert {float(kohya[m + ".alpha"]) for m in modules} == {8.0}  # the trained alpha, not the rank (4)
    down = kohya["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k.lora_down.weight"]
    torch.testing.assert_close(down, diffusers["unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora.down.weight"])


def test_comfyui_file_has_no_unloaded_key_and_the_diffusers_file_has(sd_run):
    adapter, out = sd_run
    key_map = comfy_key_map(adapter.denoiser, "sd")
    comfy = load_file(export_lora(str(out), "comfyui"))
    assert comfy_unloaded_keys(comfy, key_map) == []
    assert sum(k.endswith(".lora_up.weight") for k in comfy) == 32  # every LoRA module is loaded
    # the diffusers layout is what ComfyUI rejects ("lora key not loaded"): its attention keys do not map
    diffusers = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert len(comfy_unloaded_keys(diffusers, key_map)) == len(diffusers)


@pytest.mark.slow
def test_sd3_comfyui_keys_and_kohya_refused(tmp_path):
    adapter, _ = lora_adapter("sd3")
    adapter.save_lora(tmp_path)
    comfy = load_file(export_lora(str(tmp_path), "comfyui"))
    assert comfy_unloaded_keys(comfy, comfy_key_map(adapter.denoiser, "sd3")) == []
    assert {float(v) for k, v in comfy.items() if k.endswith(".alpha")} == {8.0}
    with pytest.raises(ValueError, match="kohya's tools have no key map"):
        export_lora(str(tmp_path), "kohya")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_kohya_file_loads_in_diffusers_with_the_same_images(family, tmp_path):
    adapter, _ = lora_adapter(family)
    adapter.save_lora(tmp_path)
    kohya = export_lora(str(tmp_path), "kohya", str(tmp_path / "k" / "lora.safetensors"))
    call = dict(num_inference_steps=2, output_type="pt", guidance_scale=2.0)
    images = []
    for source in (str(tmp_path), kohya, None):
        pipe = build_tiny_pipeline(family)
        if source:
            pipe.load_lora_weights(source)
        images.append(pipe(PROMPTS[0], generator=seeded(0), **call).images)
    from_diffusers, from_kohya, base = images
    torch.testing.assert_close(from_kohya, from_diffusers, rtol=0, atol=0)
    assert (from_kohya - base).abs().max() > 1e-2


@pytest.mark.slow
def test_merged_folder_loads_with_from_pretrained(tmp_path):
    from diffusers import DiffusionPipeline

    adapter, _ = lora_adapter("sd")
    adapter.save_lora(tmp_path)
    out = export_merged(str(tmp_path), str(tmp_path / "merged"), pipeline=build_tiny_pipeline("sd"))
    pipe = DiffusionPipeline.from_pretrained(out)
    assert not any("lora" in n for n, _ in pipe.unet.named_parameters())
    call = dict(num_inference_steps=2, output_type="pt", guidance_scale=2.0)
    merged = pipe(PROMPTS[0], generator=seeded(0), **call).images
    ours = adapter.generate(PROMPTS[0], generator=seeded(0), **call).images
    torch.testing.assert_close(merged, ours, rtol=1e-4, atol=1e-4)


def test_cli_export_and_one_line_errors(sd_run, tmp_path, capsys):
    from diffalign.cli import main

    _, out = sd_run
    target = tmp_path / "x.safetensors"
    assert main(["export", str(out), "--format", "comfyui", "--out", str(target)]) == 0
    assert any(k.startswith("lora_unet_") for k in load_file(str(target)))
    assert main(["export", str(tmp_path / "nothing"), "--format", "kohya"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no pytorch_lora_weights.safetensors" in err


def test_run_config_of_a_checkpoint_folder(tmp_path):
    ckpt = tmp_path / "checkpoints" / "step-000002"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"step": 2, "config": {"model": {"pretrained": "a/b"}}}))
    assert read_run_config(str(ckpt))["model"]["pretrained"] == "a/b"
    (ckpt / "state.json").write_text(json.dumps({"step": 2}))
    (tmp_path / "config.yaml").write_text("model:\n  pretrained: c/d\n")
    assert read_run_config(str(ckpt))["model"]["pretrained"] == "c/d"


def test_model_card_metadata_and_eval_results(tmp_path):
    import yaml

    (tmp_path / "logs").mkdir()
    rows = [{"step": 0, "eval_reward_mean": 0.25}, {"step": 5, "loss": 1.0},
            {"step": 10, "eval_reward_mean": 0.75, "gold_reward_mean": 0.5}]
    (tmp_path / "logs" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = {"trainer": "ddpo", "max_steps": 10, "model": {"pretrained": "stabilityai/sd-turbo", "family": "sd"}}
    path = write_model_card(config, str(tmp_path), license="mit")
    text = open(path, encoding="utf-8").read()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["base_model"] == "stabilityai/sd-turbo" and meta["license"] == "mit"
    assert meta["library_name"] == "diffusers" and {"lora", "diffalign-ddpo", "sd", "text-to-image"} <= set(meta["tags"])
    assert "| eval_reward_mean | 0 | 0.25 | 10 | 0.75 |" in text
    assert "| gold_reward_mean | 10 | 0.5 | 10 | 0.5 |" in text and "| loss" not in text
    assert "max_steps: 10" in text  # the training config
    # a local / embedded base model is not a Hub id: no base_model entry
    local = model_card({"model": {"pretrained": "shapes-sd"}}, str(tmp_path))
    assert "base_model" not in yaml.safe_load(local.split("---")[1])


def test_push_offline_fails_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUploadError) as e:
        push_folder(str(tmp_path), "me/run")
    assert "HF_HUB_OFFLINE=1" in str(e.value) and "\n" not in str(e.value)


def test_config_keys_for_export_hub_and_wandb():
    from diffalign.config import ConfigError, load_config
    from diffalign.train.config import TrainConfig

    cfg = load_config(TrainConfig, {"save_format": "kohya", "push_to_hub": {"repo_id": "me/run", "private": False},
                                    "wandb": {"project": "p", "entity": "team", "tags": ["a"]}})
    assert (cfg.save_format, cfg.push_to_hub.repo_id, cfg.push_to_hub.private) == ("kohya", "me/run", False)
    assert (cfg.wandb.project, cfg.wandb.entity, cfg.wandb.tags, cfg.wandb.name) == ("p", "team", ["a"], None)
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, {"save_format": "ckpt"})
    assert "save_format" in str(e.value) and "\n" not in str(e.value)


def test_wandb_options_reach_wandb_init(tmp_path, monkeypatch):
    import sys
    import types

    from diffalign.train.metrics import MetricsLogger

    calls = []
    fake = types.SimpleNamespace(init=lambda **kw: calls.append(kw) or types.SimpleNamespace(finish=lambda: None, log=lambda *a, **k: None))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    MetricsLogger(str(tmp_path), report_to=["wandb"], run_name="out",
                  wandb_options={"project": "proj", "entity": "team", "name": None, "tags": ["x", "y"]})
    MetricsLogger(str(tmp_path / "b"), report_to=["wandb"], run_name="out2", wandb_options={"name": "given"})
    assert [(c["project"], c.get("entity"), c["name"], c.get("tags")) for c in calls] == [
        ("proj", "team", "out", ["x", "y"]), ("diffalign", None, "given", None)]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_single_file_checkpoint_reads_back_exactly(tmp_path, family):
    """The merged pipeline as one original-layout file: diffusers' from_single_file (configs from a
    folder whose weights were deleted, so every weight comes from the file) gives the exact weights."""
    import glob

    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    from diffalign.export.single_file import open_clip_to_ldm

    adapter, _ = lora_adapter(family)
    adapter.save_lora(tmp_path)
    base = build_tiny_pipeline(family)
    base.save_pretrained(tmp_path / "configs")
    for f in glob.glob(str(tmp_path / "configs" / "*" / "*.safetensors")):
        os.remove(f)
    out = export_merged(str(tmp_path), str(tmp_path / "model.safetensors"), pipeline=base, single_file=True)
    keys = set(load_file(out))
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys and "first_stage_model.decoder.conv_out.weight" in keys
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    back = cls.from_single_file(out, config=str(tmp_path / "configs"), local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(base, name).state_dict(), getattr(back, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    fresh = build_tiny_pipeline(family).unet.state_dict()  # the file holds the fused LoRA, not the base
    assert any(not torch.equal(fresh[k], v) for k, v in back.unet.state_dict().items())
    if family == "sdxl":
        # diffusers picks the SDXL text encoder 2 by width, and the tiny pipeline's two encoders have the
        # same width, so check the OpenCLIP conversion against diffusers' reader directly
        te2 = base.text_encoder_2
        ckpt = {k: v for k, v in load_file(out).items() if k.startswith("conditioner.embedders.1.model.")}
        assert ckpt.keys() == open_clip_to_ldm(te2.state_dict(), "conditioner.embedders.1.model.").keys()
        read = convert_open_clip_checkpoint(te2, ckpt, prefix="conditioner.embedders.1.model.")
        ours = {k: v for k, v in te2.state_dict().items() if not k.endswith("position_ids")}
        assert ours.keys() == read.keys() and all(torch.equal(ours[k], read[k]) for k in ours)
    with pytest.raises(ValueError, match="--single-file goes with --format merged"):
        export(str(tmp_path), "kohya", single_file=True)
