"""Training: the shared loop (:mod:`.trainer`), the trainers, their configs and sampling kernels.

``TRAINERS`` maps the recipe's ``trainer:`` key to a trainer class (imported lazily); other packages
add trainers with ``TRAINERS.register(name, cls)`` or an entry point in the ``diffalign.trainers``
group. A trainer class has a ``config_class`` (its config dataclass) and ``train()``.
"""
from __future__ import annotations

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
