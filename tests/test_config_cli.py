"""Config loading (YAML + overrides into dataclasses) and the command-line entry point."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from diffalign.config import ConfigError, config_to_dict, load_config, save_config


@dataclasses.dataclass
class LoraSection:
    rank: int = 8
    alpha: float = 8.0


@dataclasses.dataclass
class DemoConfig:
    lr: float = 1e-4
    steps: int = 100
    name: str = "run"
    lora: LoraSection = dataclasses.field(default_factory=LoraSection)


def test_defaults_yaml_and_overrides_merge_in_order(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.001\nlora:\n  rank: 16\n")
    cfg = load_config(DemoConfig, recipe, ["steps=7", "lora.alpha=32"])
    assert isinstance(cfg, DemoConfig) and isinstance(cfg.lora, LoraSection)
    assert (cfg.lr, cfg.steps, cfg.name, cfg.lora.rank, cfg.lora.alpha) == (0.001, 7, "run", 16, 32.0)
    # the override wins over the file
    cfg = load_config(DemoConfig, recipe, ["lr=0.5"])
    assert cfg.lr == 0.5


def error(cls, path=None, overrides=()) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(cls, path, overrides)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_unknown_key_names_the_source_the_dotted_key_and_the_valid_keys(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("lr: 0.1\nlearning_rate: 3\n")
    assert error(DemoConfig, recipe) == f"{recipe}: unknown key 'learning_rate'; valid keys: lora, lr, name, steps"
    recipe.write_text("lora:\n  rnak: 4\n")
    assert error(DemoConfig, recipe) == f"{recipe}: unknown key 'lora.rnak' (did you mean 'lora.rank'?); valid keys of lora: alpha, rank"
    # a typo in an override is reported as the command line's, even with a recipe
    recipe.write_text("lr: 0.1\n")
    assert error(DemoConfig, recipe, ["lora.alfa=4"]) == "command line: unknown key 'lora.alfa' (did you mean 'lora.alpha'?); valid keys of lora: alpha, rank"


def test_wrong_types_and_malformed_overrides(tmp_path):
    assert error(DemoConfig, None, ["steps=many"]) == "command line: steps: expected an integer, got 'many'"
    assert error(DemoConfig, None, ["lr=[1, 2]"]) == "command line: lr: expected a number, got [1, 2]"
    assert error(DemoConfig, None, ["lora=4"]) == "command line: lora: expected a section (keys: rank, alpha), got 4"
    assert error(DemoConfig, None, ["lora.rank=null"]) == "command line: lora.rank: expected an integer, got null"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lora:\n  alpha: true\n")
    assert error(DemoConfig, recipe) == f"{recipe}: lora.alpha: expected a number, got True"
    assert error(DemoConfig, None, ["steps"]) == "command line: overrides must be key=value, got: steps"
    assert error(DemoConfig, tmp_path / "missing.yaml") == f"recipe file not found: {tmp_path / 'missing.yaml'}"
    assert load_config(DemoConfig, None, ["lr=1e-4", "steps=3"]).lr == 1e-4  # YAML 1.1's dot-less exponent


def test_trainer_configs_choices_renames_and_dtypes(tmp_path):
    from diffalign.rewards import available
    from diffalign.train.online.config import AlignPropConfig, D3POConfig, DDPOConfig, FlowGRPOConfig

    assert error(DDPOConfig, None, ["reward.name=pickscor"]) == (
        "command line: reward.name: 'pickscor' is not one of: " + ", ".join(available()))
    assert error(DDPOConfig, None, ["model.family=sdx"]) == "command line: model.family: 'sdx' is not one of: cogvideox, flux, flux2, hunyuanvideo15, ltx2, qwenimage, sd, sd3, sdxl, wan, zimage"
    assert error(DDPOConfig, None, ["trainer=dppo"]) == (
        "command line: trainer: 'dppo' is not one of: alignprop, d3po, ddpo, draft, flow_grpo, offline, refl")
    assert error(DDPOConfig, None, ["report_to=[jsonl,wandbb]"]) == (
        "command line: report_to[1]: 'wandbb' is not one of: jsonl, tensorboard, wandb")
    # the key meant: the same name one section down, or the closest (an old name leads to the new one)
    assert error(DDPOConfig, None, ["guidance_scale=3"]).startswith(
        "command line: unknown key 'guidance_scale' (did you mean 'validation.guidance_scale' or 'sampling.guidance_scale' or 'evaluation.guidance_scale'?); "
        "valid keys: advantages, allow_tf32, batch_size, ")
    assert error(DDPOConfig, None, ["sampling.num_step=3"]).startswith(
        "command line: unknown key 'sampling.num_step' (did you mean 'sampling.num_inference_steps'?); valid keys of sampling: ")
    assert error(DDPOConfig, None, ["model.weight_dtype=fp8"]) == (
        "command line: model.weight_dtype: unknown dtype 'fp8'; choose one of: fp32, float32, float, fp16, float16, half, bf16, bfloat16")
    # keys renamed when every trainer took one name per concept say their new name
    recipe = tmp_path / "old.yaml"
    recipe.write_text("sampling:\n  num_steps: 10\nbeta: 0.1\n")
    assert error(FlowGRPOConfig, recipe) == f"{recipe}: sampling.num_steps was renamed to sampling.num_inference_steps"
    assert error(D3POConfig, None, ["beta=0.2"]) == "command line: beta was renamed to loss.beta"
    assert error(DDPOConfig, None, ["evaluation.num_steps=4"]) == "command line: evaluation.num_steps was renamed to evaluation.num_inference_steps"
    assert error(AlignPropConfig, None, ["loss_scale=2"]) == "command line: loss_scale was renamed to loss.scale"
    assert error(AlignPropConfig, None, ["loss=negative"]) == (
        "command line: loss: expected a section (keys: kind, target, scale), got 'negative'")
    assert error(AlignPropConfig, None, ["loss.kind=hinge"]) == "command line: loss.kind=hinge needs loss.target"
    assert error(DDPOConfig, None, ["extra.note=1"]) == "command line: extra was removed: it was never read"
    # every dtype spelling is accepted and stored under one name
    cfg = load_config(DDPOConfig, None, ["mixed_precision=float16", "model.weight_dtype=bfloat16", "loss.clip_range=0.2"])
    assert (cfg.mixed_precision, cfg.model.weight_dtype, cfg.loss.clip_range) == ("fp16", "bf16", 0.2)
    recipe.write_text("mixed_precision: no\nmodel:\n  weight_dtype: half\n")  # YAML reads `no` as false
    cfg = load_config(DDPOConfig, recipe)
    assert (cfg.mixed_precision, cfg.model.weight_dtype) == ("no", "fp16")
    assert (DDPOConfig(mixed_precision="bf16").mixed_precision, DDPOConfig(mixed_precision="float32").mixed_precision) == ("bf16", "no")


def test_dtype_spellings():
    import torch

    from diffalign.utils.dtypes import dtype_name, mixed_precision_name, torch_dtype

    for names, dtype in ((("fp16", "float16", "half", "FP16"), torch.float16), (("bf16", "bfloat16"), torch.bfloat16),
                         (("fp32", "float32", "float"), torch.float32)):
        assert {torch_dtype(n) for n in names} == {dtype}
        assert dtype_name(dtype) == names[0]
    assert torch_dtype(None) is None and mixed_precision_name("float32") == "no" and mixed_precision_name(False) == "no"
    with pytest.raises(ValueError, match="unknown dtype 'int8'; choose one of: fp32"):
        torch_dtype("int8")


def test_pipeline_dtype_option_takes_short_names():
    """``--dtype fp16`` (sample / eval) used to raise AttributeError (getattr(torch, "fp16"))."""
    import torch

    from diffalign.pipelines.generation import PipelineSpec, load_pipeline_spec

    pipe = load_pipeline_spec(PipelineSpec("shapes-sd"), device="cpu", dtype="fp16")
    assert pipe.unet.dtype == torch.float16 and pipe.vae.dtype == torch.float16


def test_train_command_reports_config_errors_before_loading_a_model(tmp_path, capsys):
    from diffalign.cli import main

    def error_line(argv):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.endswith(" (--debug shows the traceback)\n")
        return err

    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer: ddpo\nmodel:\n  pretrained: /nonexistent\nsampling:\n  num_inference_steps: 3\n")
    assert error_line(["train", str(recipe), "sampling.guidance=2"]).startswith(
        "diffalign train: error: command line: unknown key 'sampling.guidance' (did you mean 'sampling.guidance_scale'?); valid keys of sampling: ")
    assert error_line(["train", str(recipe), "trainer=dppo"]).startswith(
        "diffalign train: error: command line: trainer: unknown trainer 'dppo'; choose one of: alignprop, d3po")
    recipe.write_text("trainer: flow_grpo\nclip_range: 0.1\n")
    assert error_line(["train", str(recipe)]) == (
        f"diffalign train: error: {recipe}: clip_range was renamed to loss.clip_range (--debug shows the traceback)\n")
    # --debug (before or after the command) or DIFFALIGN_DEBUG=1: the exception itself, with its traceback
    for argv in (["--debug", "train", str(recipe)], ["train", str(recipe), "--debug"]):
        with pytest.raises(ConfigError, match="clip_range was renamed"):
            main(argv)


def test_debug_env_var_shows_the_traceback(tmp_path, monkeypatch):
    from diffalign.cli import main

    monkeypatch.setenv("DIFFALIGN_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped recipe"):
        main(["train", str(tmp_path / "missing.yaml")])


def test_save_round_trip(tmp_path):
    cfg = load_config(DemoConfig, None, ["lora.rank=4"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(DemoConfig, tmp_path / "c.yaml")
    assert again == cfg and config_to_dict(again)["lora"]["rank"] == 4


@pytest.mark.slow
def test_cli_lists_commands_and_version():
    out = subprocess.run([sys.executable, "-m", "diffalign", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout
    out = subprocess.run([sys.executable, "-m", "diffalign", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("diffalign ")
    out = subprocess.run([sys.executable, "-m", "diffalign"], capture_output=True, text=True)
    assert out.returncode == 2


def test_offline_method_is_checked_against_the_losses():
    from diffalign.losses import LOSSES
    from diffalign.train.offline import OfflineConfig

    assert load_config(OfflineConfig, None, ["method=mapo"]).method == "mapo"
    assert error(OfflineConfig, None, ["method=dpoo"]) == "command line: method: 'dpoo' is not one of: " + ", ".join(LOSSES)
    message = error(OfflineConfig, None, ["data.kind=pair"])
    assert message == "command line: data.kind: 'pair' is not one of: pairs, unpaired, ranked, video_pairs"


@pytest.mark.slow  # (imports every trainer: seconds)
def test_every_shipped_recipe_parses_with_its_trainer_config():
    """Offline and online alike: each shipped recipe loads into its trainer's config (keys, values, choices)."""
    from diffalign.train import get_trainer_class
    from diffalign.train_command import list_recipes, recipe_path, trainer_name

    names = list_recipes()
    assert {"shapes_dpo", "cogvideox2b_dense_dpo", "cogvideox5b_dense_dpo", "cogvideox2b_ddpo_video",
            "cogvideox2b_vader_hps"} <= set(names)
    for name in names:
        path = recipe_path(name)
        cfg = load_config(get_trainer_class(trainer_name(path)).config_class, path)
        assert cfg.max_steps > 0, name
