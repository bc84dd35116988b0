"""Exponential moving average of the trained parameters: diffusers' ``training_utils.EMAModel`` with
Flow-GRPO's ``EMAModuleWrapper`` schedule.

At optimizer step ``k`` (0-based) the decay is ``min((1 + k) / (10 + k), decay)`` and the average
is only updated when ``(k + 1) % update_interval == 0``; Flow-GRPO uses ``decay = 0.9`` and
``update_interval = 8`` ("affects the previous 20 x 8 = 160 steps on average"). EMAModel's own
schedule is the same formula one step later (and 0 at its first step), so only :meth:`get_decay`
is replaced; the update, ``store`` / ``copy_to`` / ``restore`` are diffusers'. The averaged
weights are swapped in for evaluation and for the saved outputs.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from diffusers.training_utils import EMAModel


class ParameterEMA(EMAModel):
    def __init__(self, parameters: Sequence[torch.nn.Parameter], decay: float = 0.9, update_interval: int = 1):
        if not 0 <= decay < 1:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        if update_interval < 1:
            raise ValueError(f"ema update_interval must be >= 1, got {update_interval}")
        super().__init__([p.detach().float() for p in parameters], decay=float(decay))
        self.update_interval = int(update_interval)

    @property
    def shadow(self) -> list[torch.Tensor]:
        return self.shadow_params

    def get_decay(self, optimization_step: int) -> float:
        """Decay of EMAModel's ``optimization_step`` (1-based: optimizer step ``k = optimization_step - 1``)."""
        k = optimization_step - 1
        return min((1 + k) / (10 + k), self.decay)

    @torch.no_grad()
    def step(self, parameters: Sequence[torch.nn.Parameter], optimizer_step: int) -> None:  # type: ignore[override]
        """Called after optimizer step ``optimizer_step`` (0-based)."""
        if (optimizer_step + 1) % self.update_interval:
            return
        self.optimization_step = optimizer_step  # EMAModel.step counts it up to k + 1
        super().step(list(parameters))

    @contextlib.contextmanager
    def swapped_in(self, parameters: Sequence[torch.nn.Parameter]) -> Iterator[None]:
        """Hold the averaged weights in ``parameters`` inside the block, then restore the trained ones."""
        parameters = list(parameters)
        self.store(parameters)
        self.copy_to(parameters)
        try:
            yield
        finally:
            self.restore(parameters)
            self.temp_stored_params = None

    def state_tensors(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        return {f"ema.{n}": t for n, t in zip(names, self.shadow_params, strict=True)}

    def load_state_tensors(self, names: Sequence[str], tensors: dict[str, torch.Tensor]) -> None:
        missing = [n for n in names if f"ema.{n}" not in tensors]
        if missing:
            raise ValueError(f"checkpoint has no EMA weights for {missing[:3]}...")
        self.shadow_params = [tensors[f"ema.{n}"].float().to(t.device) for n, t in zip(names, self.shadow_params)]


__all__ = ["ParameterEMA"]
