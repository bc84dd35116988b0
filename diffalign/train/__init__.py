"""Training: the trainer template (:mod:`.trainer`), the trainers, their configs; called, the Python entry point.

``TRAINERS`` maps the recipe's ``trainer:`` key to a trainer class (imported lazily); other packages
add trainers with ``TRAINERS.register(name, cls)`` or an entry point in the ``diffalign.trainers``
group. A trainer class has a ``config_class`` (its config dataclass) and ``train()``.
"""
from __future__ import annotations

import sys
import types

from diffalign.registry import Registry

TRAINERS: Registry[type] = Registry(
    "trainer",
    {
        "offline": "diffalign.train.offline:OfflinePreferenceTrainer",
        "ddpo": "diffalign.train.online.ddpo:DDPOTrainer",
        "d3po": "diffalign.train.online.d3po:D3POTrainer",
        "flow_grpo": "diffalign.train.online.flow_grpo:FlowGRPOTrainer",
        "alignprop": "diffalign.train.online.reward_gradient:AlignPropTrainer",
        "draft": "diffalign.train.online.reward_gradient:DRaFTTrainer",
        "refl": "diffalign.train.online.reward_gradient:ReFLTrainer",
    },
    entry_point_group="diffalign.trainers",
)


def get_trainer_class(name: str) -> type:
    """The trainer class registered as ``name``; an unknown name raises a one-line ``UnknownNameError``."""
    return TRAINERS.get(name)


class _TrainModule(types.ModuleType):
    """``diffalign.train`` is also the Python entry point: ``diffalign.train(config, dataset=None,
    reward=None, adapter=None)`` runs :func:`diffalign.train.api.train`."""

    def __call__(self, config, dataset=None, reward=None, adapter=None, overrides=()):
        from diffalign.train.api import train

        return train(config, dataset=dataset, reward=reward, adapter=adapter, overrides=overrides)


sys.modules[__name__].__class__ = _TrainModule
