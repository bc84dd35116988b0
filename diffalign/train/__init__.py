"""Training: the shared loop (:mod:`.trainer`), the trainers, their configs and sampling kernels.

``TRAINERS`` maps the recipe's ``trainer:`` key to a trainer class (imported lazily).
"""
from __future__ import annotations

import importlib

TRAINERS: dict[str, str] = {
    "offline": "diffalign.train.offline:OfflinePreferenceTrainer",
}


def get_trainer_class(name: str):
    if name not in TRAINERS:
        raise KeyError(f"unknown trainer {name!r}; known: {', '.join(sorted(TRAINERS))}")
    module, _, cls = TRAINERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
