"""diffalign: align image and video diffusion models with human preferences.

Python entry points (imported lazily: ``import diffalign`` stays light)::

    import diffalign
    result = diffalign.train("recipe.yaml")                       # like `diffalign train recipe.yaml`
    result = diffalign.train(diffalign.OfflineConfig(...), dataset=rows)         # in-memory pairs
    result = diffalign.train({"trainer": "ddpo", ...}, reward=lambda images, prompts: images.mean((1, 2, 3)))
    adapter = diffalign.load_adapter("stabilityai/stable-diffusion-2-1")
    reward = diffalign.load_reward("aesthetic")                   # = diffalign.rewards.load
    summary = diffalign.run_geneval(out, evaluator, pipe=pipe, rows=rows)

Subpackages:
- ``diffalign.pipelines``: one adapter per diffusers model family (sd, sdxl, sd3, cogvideox).
- ``diffalign.shapes``: the embedded synthetic text-to-image world with an exact judge.
- ``diffalign.train``: the trainer template and the trainers (and, called, the Python entry point).
- ``diffalign.rewards``: reward models behind one interface.
- ``diffalign.eval``: evaluation jobs (GenEval, HPSv2, win-rates).
"""
from __future__ import annotations

import importlib

from diffalign._compat import ensure_torchvision_importable as _ensure_tv

_ensure_tv()

__version__ = "0.1.0"

#: top-level name -> "module:attribute" (or "module" for the module itself), imported on first use.
_EXPORTS = {
    "train": "diffalign.train",
    "build_trainer": "diffalign.train.api:build_trainer",
    "TrainResult": "diffalign.train.trainer:TrainResult",
    "Trainer": "diffalign.train.trainer:Trainer",
    "TrainConfig": "diffalign.train.config:TrainConfig",
    "OfflinePreferenceTrainer": "diffalign.train.offline:OfflinePreferenceTrainer",
    "OfflineConfig": "diffalign.train.offline:OfflineConfig",
    "DDPOTrainer": "diffalign.train.online.ddpo:DDPOTrainer",
    "D3POTrainer": "diffalign.train.online.d3po:D3POTrainer",
    "FlowGRPOTrainer": "diffalign.train.online.flow_grpo:FlowGRPOTrainer",
    "AlignPropTrainer": "diffalign.train.online.reward_gradient:AlignPropTrainer",
    "DRaFTTrainer": "diffalign.train.online.reward_gradient:DRaFTTrainer",
    "ReFLTrainer": "diffalign.train.online.reward_gradient:ReFLTrainer",
    "DDPOConfig": "diffalign.train.online.config:DDPOConfig",
    "D3POConfig": "diffalign.train.online.config:D3POConfig",
    "FlowGRPOConfig": "diffalign.train.online.config:FlowGRPOConfig",
    "AlignPropConfig": "diffalign.train.online.config:AlignPropConfig",
    "DRaFTConfig": "diffalign.train.online.config:DRaFTConfig",
    "ReFLConfig": "diffalign.train.online.config:ReFLConfig",
    "DataConfig": "diffalign.data.config:DataConfig",
    "load_adapter": "diffalign.pipelines:load_adapter",
    "adapter_for": "diffalign.pipelines:adapter_for",
    "load_reward": "diffalign.rewards:load",
    "Reward": "diffalign.rewards:Reward",
    "run_geneval": "diffalign.eval.geneval.job:run",
    "GenEvalEvaluator": "diffalign.geneval.evaluator:GenEvalEvaluator",
}
_SUBPACKAGES = ("data", "eval", "geneval", "losses", "pipelines", "rewards", "samplers", "shapes", "utils")


def __getattr__(name: str):
    if name in _EXPORTS:
        module, _, attr = _EXPORTS[name].partition(":")
        value = importlib.import_module(module)
        value = getattr(value, attr) if attr else value
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"diffalign.{name}")
    else:
        raise AttributeError(f"module 'diffalign' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBPACKAGES))


__all__ = sorted(_EXPORTS)
