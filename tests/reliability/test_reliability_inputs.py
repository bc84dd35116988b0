"""Bad inputs give one line naming where the problem is and change no existing file: config values
(before anything loads, from the recipe file or the command line), the output folder of a previous
run, a method's loss arguments and data kind."""
from __future__ import annotations

import math
import warnings

import pytest
from reliability_helpers import snapshot

from diffalign.cli import main
from diffalign.config import ConfigError, load_config
from diffalign.train.config import OptimConfig
from diffalign.train.offline import OfflineConfig
from diffalign.train_command import recipe_path

# (override, what the one line must say after "command line: ")
BAD_VALUES = [
    ("batch_size=0", "batch_size: must be >= 1, got 0"),
    ("gradient_accumulation_steps=0", "gradient_accumulation_steps: must be >= 1, got 0"),
    ("max_steps=-1", "max_steps: must be >= 0, got -1"),
    ("optim.lr=-1e-4", "optim.lr: must be > 0, got -0.0001"),
    ("optim.lr=0", "optim.lr: must be > 0, got 0"),
    ("optim.lr=nan", "optim.lr: must be a finite number, got 'nan'"),
    ("optim.lr=.inf", "optim.lr: must be a finite number, got inf"),
    ("optim.max_grad_norm=-1", "optim.max_grad_norm: must be >= 0, got -1"),
    ("optim.warmup_steps=-5", "optim.warmup_steps: must be >= 0, got -5"),
    ("lora.rank=0", "lora.rank: must be >= 1, got 0"),
    ("checkpoints_total_limit=0", "checkpoints_total_limit: must be >= 1, got 0"),
    ("proportion_empty_prompts=-0.1", "proportion_empty_prompts: must be >= 0, got -0.1"),
    ("optim.lr_scheduler=cosinus", "optim.lr_scheduler: 'cosinus' is not one of: linear, cosine"),
    ("model.weight_dtype=float61", "model.weight_dtype: unknown dtype 'float61'; choose one of: fp32"),
    ("mixed_precision=fp8", "mixed_precision: unknown mixed precision 'fp8'; choose one of: no, fp32"),
    ("batch_size=two", "batch_size: expected an integer, got 'two'"),
    ("optim.lrr=1", "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
    ("method=dpoo", "method: 'dpoo' is not one of: "),
    ("overwrite=maybe", "overwrite: expected true or false, got 'maybe'"),
]


@pytest.fixture
def recipe(tmp_path):
    """A recipe whose model does not exist: any error past the checks would be a load error."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    path = tmp_path / "r.yaml"
    path.write_text(f"method: diffusion_dpo\noutput_dir: {out}\nmodel:\n  pretrained: /nonexistent/model\n"
                    "loss:\n  beta: 5000\n")
    return path


def one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("override,expected", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_value_is_one_line_from_the_command_line_before_loading(recipe, tmp_path, capsys, override, expected):
    before = snapshot(tmp_path)
    err = one_error_line(capsys, ["train", str(recipe), override])
    assert err.startswith(f"diffalign train: error: command line: {expected}"), err
    assert snapshot(tmp_path) == before


def test_bad_value_in_the_recipe_names_the_file(recipe, capsys):
    recipe.write_text(recipe.read_text() + "batch_size: 0\n")
    assert one_error_line(capsys, ["train", str(recipe)]).startswith(
        f"diffalign train: error: {recipe}: batch_size: must be >= 1, got 0")


def test_bounds_hold_for_configs_built_in_python():
    with pytest.raises(ConfigError, match="^config: batch_size: must be >= 1, got 0$"):
        load_config(OfflineConfig, {"batch_size": 0})
    with pytest.raises(ValueError, match="lr: must be a finite number, got nan"):
        OptimConfig(lr=math.nan)  # built in Python without OmegaConf: checked in __post_init__
    with pytest.raises(ValueError, match="batch_size: must be >= 1, got 0"):
        OfflineConfig(batch_size=0)
    # every dtype spelling is accepted on both sides
    cfg = load_config(OfflineConfig, None, ["model.weight_dtype=float16", "mixed_precision=bfloat16"])
    assert (cfg.model.weight_dtype, cfg.mixed_precision) == ("fp16", "bf16")


# ----------------------------------------------------------------------------- output folder
def test_fresh_run_into_a_previous_run_refuses_before_loading(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-000005").mkdir(parents=True)
    (out / "config.yaml").write_text("seed: 0\n")
    (out / "pytorch_lora_weights.safetensors").write_bytes(b"old lora")
    before = snapshot(out)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {out}\nmodel:\n  pretrained: /nonexistent/model\n")
    err = one_error_line(capsys, ["train", str(recipe)])
    assert err == (f"diffalign train: error: output_dir {out} already holds a run (checkpoints, config.yaml, "
                   "pytorch_lora_weights.safetensors); continue it with resume=latest, replace it with overwrite=true, "
                   "or choose another output_dir (--debug shows the traceback)\n")
    assert snapshot(out) == before
    # a folder with only unrelated files is not a run
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    from diffalign.train.rundir import check_output_dir

    check_output_dir(str(tmp_path / "other"), None, False)


# ----------------------------------------------------------------------------- method and loss
def test_switching_method_takes_the_methods_own_loss_defaults():
    dpo = recipe_path("shapes_dpo")
    assert load_config(OfflineConfig, dpo).loss == {"beta": 5000.0}
    with pytest.warns(UserWarning, match=r"shapes_dpo.yaml: loss.beta ignored: given for method=diffusion_dpo, "
                                         r"but method=mapo takes its own defaults"):
        assert load_config(OfflineConfig, dpo, ["method=mapo"]).loss == {}
    with pytest.warns(UserWarning, match="loss.beta ignored"):
        assert load_config(OfflineConfig, dpo, ["method=mapo", "loss.beta=0.2"]).loss == {"beta": 0.2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(OfflineConfig, dpo, ["method=diffusion_dpo", "loss.beta=2500"]).loss == {"beta": 2500}


def test_far_off_loss_value_warns_and_unknown_argument_is_one_line():
    from diffalign.losses import INPUT_LAYOUTS, get_loss
    from diffalign.train.method_checks import check_method

    cfg = OfflineConfig(method="mapo", loss={"beta": 5000.0})
    spec = get_loss("mapo")
    with pytest.warns(UserWarning, match=r"loss.beta=5000 is far from mapo's default 0.1 \(5e\+04 x\)"):
        check_method(cfg, spec, INPUT_LAYOUTS.get(spec.inputs))
    cfg.loss = {"beta": 0.5}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_method(cfg, spec, INPUT_LAYOUTS.get(spec.inputs))
    cfg.loss = {"betta": 0.5}
    with pytest.raises(ConfigError, match="^loss.betta: not an argument of mapo"):
        check_method(cfg, spec, INPUT_LAYOUTS.get(spec.inputs))


def test_kto_on_pairs_names_the_flag_and_accepts_it():
    from diffalign.losses import INPUT_LAYOUTS, get_loss
    from diffalign.train.method_checks import check_method

    spec = get_loss("kto")
    layout = INPUT_LAYOUTS.get(spec.inputs)
    cfg = load_config(OfflineConfig, None, ["method=kto"])
    with pytest.raises(ConfigError, match=r"^method kto trains on data.kind=unpaired \(or data.unpaired_from_pairs=true "
                                          r"to train on pairs\), but data.kind=pairs$"):
        check_method(cfg, spec, layout)
    cfg = load_config(OfflineConfig, None, ["method=kto", "data.unpaired_from_pairs=true"])
    assert check_method(cfg, spec, layout).kind == "unpaired"
