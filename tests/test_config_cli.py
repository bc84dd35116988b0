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


def test_unknown_key_names_file_and_key(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("lr: 0.1\nlearning_rate: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(DemoConfig, recipe)
    assert "bad.yaml" in str(e.value) and "learning_rate" in str(e.value)


def test_wrong_type_and_malformed_override(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(DemoConfig, None, ["steps=many"])
    assert "steps" in str(e.value)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(DemoConfig, None, ["steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(DemoConfig, tmp_path / "missing.yaml")


def test_save_round_trip(tmp_path):
    cfg = load_config(DemoConfig, None, ["lora.rank=4"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(DemoConfig, tmp_path / "c.yaml")
    assert again == cfg and config_to_dict(again)["lora"]["rank"] == 4


def test_cli_lists_commands_and_version():
    out = subprocess.run([sys.executable, "-m", "diffalign", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout
    out = subprocess.run([sys.executable, "-m", "diffalign", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("diffalign ")
    out = subprocess.run([sys.executable, "-m", "diffalign"], capture_output=True, text=True)
    assert out.returncode == 2
