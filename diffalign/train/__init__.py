"""Training: the shared loop (:mod:`.trainer`), the trainers, their configs and sampling kernels.

``TRAINERS`` maps the recipe's ``trainer:`` key to a trainer class (imported lazily).
"""
from __future__ import annotations

import importlib

TRAINERS: dict[str, str] = {
    "offline": "diffalign.train.offline:OfflinePreferenceTrainer",
    "ddpo": "diffalign.train.online.ddpo:DDPOTrainer",
    "d3po": "diffalign.train.online.d3po:D3POTrainer",
    "flow_grpo": "diffalign.train.online.flow_grpo:FlowGRPOTrainer",
    "alignprop": "diffalign.train.online.reward_gradient:AlignPropTrainer",
    "draft": "diffalign.train.online.reward_gradient:DRaFTTrainer",
    "refl": "diffalign.train.online.reward_gradient:ReFLTrainer",
}


def get_trainer_class(name: str):
    if name not in TRAINERS:
        raise KeyError(f"unknown trainer {name!r}; known: {', '.join(sorted(TRAINERS))}")
    module, _, cls = TRAINERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


class _TrainModule(type(importlib)):
    """``diffalign.train`` is also the Python entry point: ``diffalign.train(config, dataset=None,
    reward=None, adapter=None)`` runs :func:`diffalign.train.api.train`."""

    def __call__(self, config, dataset=None, reward=None, adapter=None, overrides=()):
        from diffalign.train.api import train

        return train(config, dataset=dataset, reward=reward, adapter=adapter, overrides=overrides)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _TrainModule
