"""Exponential moving average of the trained parameters (Flow-GRPO's ``EMAModuleWrapper`` schedule).

At optimizer step ``k`` (0-based) the decay is ``min((1 + k) / (10 + k), decay)`` and the average
is only updated when ``(k + 1) % update_interval == 0``; Flow-GRPO uses ``decay = 0.9`` and
``update_interval = 8`` ("affects the previous 20 x 8 = 160 steps on average"). The averaged
weights are swapped in for evaluation and for the saved outputs.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch


class ParameterEMA:
    def __init__(self, parameters: Sequence[torch.nn.Parameter], decay: float = 0.9, update_interval: int = 1):
        if not 0 <= decay < 1:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        if update_interval < 1:
            raise ValueError(f"ema update_interval must be >= 1, got {update_interval}")
        self.decay, self.update_interval = float(decay), int(update_interval)
        self.shadow = [p.detach().clone().float() for p in parameters]

    def current_decay(self, optimizer_step: int) -> float:
        return min((1 + optimizer_step) / (10 + optimizer_step), self.decay)

    @torch.no_grad()
    def step(self, parameters: Sequence[torch.nn.Parameter], optimizer_step: int) -> None:
        """Called after optimizer step ``optimizer_step`` (0-based)."""
        if (optimizer_step + 1) % self.update_interval:
            return
        weight = 1 - self.current_decay(optimizer_step)
        for avg, p in zip(self.shadow, parameters, strict=True):
            avg.add_(weight * (p.detach().float() - avg))

    @contextlib.contextmanager
    def swapped_in(self, parameters: Sequence[torch.nn.Parameter]) -> Iterator[None]:
        """Hold the averaged weights in ``parameters`` inside the block, then restore the trained ones."""
        parameters = list(parameters)
        saved = [p.detach().clone() for p in parameters]
        with torch.no_grad():
            for p, avg in zip(parameters, self.shadow, strict=True):
                p.copy_(avg.to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(parameters, saved):
                    p.copy_(s)

    def state_tensors(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        return {f"ema.{n}": t for n, t in zip(names, self.shadow, strict=True)}

    def load_state_tensors(self, names: Sequence[str], tensors: dict[str, torch.Tensor]) -> None:
        missing = [n for n in names if f"ema.{n}" not in tensors]
        if missing:
            raise ValueError(f"checkpoint has no EMA weights for {missing[:3]}...")
        self.shadow = [tensors[f"ema.{n}"].float().to(t.device) for n, t in zip(names, self.shadow)]


__all__ = ["ParameterEMA"]
