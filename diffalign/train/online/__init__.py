"""Online and reward-gradient trainers.

Policy-gradient family (sample -> score -> replay stored transitions, one backward per trained
timestep): :class:`DDPOTrainer`, :class:`D3POTrainer`, :class:`FlowGRPOTrainer`.
Reward-gradient family (back-propagate a differentiable reward through the sampler, each
graph-keeping denoiser call gradient-checkpointed): :class:`AlignPropTrainer`,
:class:`DRaFTTrainer` (DRaFT, DRaFT-K, DRaFT-LV), :class:`ReFLTrainer`.

Building blocks: :mod:`.prompts`, :mod:`.grouping` (K-repeat sampler), :mod:`.advantages`,
:mod:`.sampling` (the chain shared by rollouts and training), :mod:`.trajectories`,
:mod:`.scoring`, :mod:`.ema`; configs in :mod:`.config`. See ``docs/online.md``.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "DDPOTrainer": "diffalign.train.online.ddpo",
    "D3POTrainer": "diffalign.train.online.d3po",
    "FlowGRPOTrainer": "diffalign.train.online.flow_grpo",
    "AlignPropTrainer": "diffalign.train.online.reward_gradient",
    "DRaFTTrainer": "diffalign.train.online.reward_gradient",
    "ReFLTrainer": "diffalign.train.online.reward_gradient",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
