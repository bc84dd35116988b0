"""Configs: one dataclass per job, filled from a YAML recipe plus ``key=value`` overrides.

``load_config(MyConfig, "recipe.yaml", ["lr=1e-4", "lora.rank=16"])`` merges, in order, the
dataclass defaults, the YAML file and the command-line overrides (OmegaConf dotted keys), checks
types and unknown keys against the dataclass, and returns a plain dataclass instance. Errors name
the file and the offending key.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe or override that does not fit the config dataclass."""


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    schema = OmegaConf.structured(cls)
    layers = [schema]
    if path is not None:
        path = str(path)
        if not os.path.exists(path):
            raise ConfigError(f"recipe file not found: {path}")
        try:
            data = OmegaConf.load(path)
        except Exception as e:  # yaml syntax errors
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        layers.append(data)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must be key=value, got: {' '.join(bad)}")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(*layers)
    except OmegaConfBaseException as e:
        where = f"{path}: " if path else ""
        key = getattr(e, "full_key", None)
        raise ConfigError(f"{where}invalid config key {key!r}: {e.msg if hasattr(e, 'msg') else e}") from e
    obj = OmegaConf.to_object(merged)
    assert dataclasses.is_dataclass(obj)
    return obj  # type: ignore[return-value]


def config_to_dict(cfg: Any) -> dict:
    """A plain dict of a config dataclass (for logging and saving next to outputs)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    OmegaConf.save(OmegaConf.structured(cfg), str(path))
