"""Training from Python with objects, the same face as ``diffalign train RECIPE key=value``.

``diffalign.train(config, dataset=None, reward=None, adapter=None, overrides=())`` builds the trainer
the config names (``trainer:``) and runs it:

- ``config``: a trainer config object (``OfflineConfig``, ``DDPOConfig``...), a dict of the same
  fields as a recipe (``{"trainer": "ddpo", "max_steps": 10, ...}``), or a recipe YAML path;
  ``overrides``: ``key=value`` strings as on the command line;
- ``dataset`` (offline trainer): a ``datasets.Dataset``, a torch map-style dataset of dicts or a list
  of dicts with the columns of ``data.kind`` (as in a parquet/jsonl file), instead of ``data.path``;
- ``reward`` (online trainers): a registered name, a :class:`~diffalign.rewards.Reward`, a plain
  callable ``(images, prompts) -> scores`` (images in [0, 1]), or several with weights
  (``{"aesthetic": 1.0, "mine": (fn, 0.5)}``), instead of the config's ``reward`` section;
- ``adapter``: a :class:`~diffalign.pipelines.PipelineAdapter`, a diffusers pipeline object or a
  model path, instead of ``model.pretrained``.

:func:`build_trainer` returns the trainer without running it (to inspect or call its phases).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

from diffalign.config import load_config, read_recipe
from diffalign.pipelines import PipelineAdapter, adapter_for, load_adapter

__all__ = ["as_config", "build_trainer", "train"]


def as_config(config: Any, overrides: Sequence[str] = ()):
    """A trainer config object from a config object, a dict or a recipe path (plus overrides)."""
    from omegaconf import OmegaConf

    from diffalign.train import get_trainer_class

    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        if not overrides:
            return config
        config = OmegaConf.to_container(OmegaConf.structured(config))
    if isinstance(config, (str, os.PathLike)):
        name = str(read_recipe(config).get("trainer", "offline"))
        return load_config(get_trainer_class(name).config_class, config, overrides)
    if isinstance(config, Mapping):
        cls = get_trainer_class(str(config.get("trainer", "offline"))).config_class
        return load_config(cls, config, overrides)
    raise TypeError(f"config: expected a trainer config object, a dict or a recipe path, got {type(config).__name__}")


def build_trainer(config: Any, dataset: Any = None, reward: Any = None, adapter: Any = None,
                  overrides: Sequence[str] = ()):
    """The trainer ``config`` names, built with the given objects (see the module doc)."""
    from diffalign.train import get_trainer_class
    from diffalign.train.offline import OfflinePreferenceTrainer

    cfg = as_config(config, overrides)
    cls = get_trainer_class(cfg.trainer)
    offline = issubclass(cls, OfflinePreferenceTrainer)
    if dataset is not None and not offline:
        raise TypeError(f"dataset= is preference data for the offline trainer; the {cfg.trainer} trainer samples "
                        "its own images from prompts (set prompts.* in the config)")
    if reward is not None and offline:
        raise TypeError("reward= is for the online trainers (ddpo, d3po, flow_grpo, alignprop, draft, refl); the "
                        "offline trainer learns from preference pairs")
    if isinstance(adapter, (str, os.PathLike)):
        adapter = load_adapter(str(adapter))
    elif adapter is not None and not isinstance(adapter, PipelineAdapter):
        adapter = adapter_for(adapter)  # a diffusers pipeline object
    extra = {"dataset": dataset} if offline else {"reward": reward}
    return cls(cfg, adapter=adapter, **extra)


def train(config: Any, dataset: Any = None, reward: Any = None, adapter: Any = None, overrides: Sequence[str] = ()):
    """Build the trainer and run it; returns its :class:`~diffalign.train.trainer.TrainResult`."""
    return build_trainer(config, dataset, reward, adapter, overrides).train()
