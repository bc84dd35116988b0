"""Optimizers and learning-rate schedules from an :class:`OptimConfig`."""
from __future__ import annotations

from typing import Iterable

import torch

from diffalign.train.config import OPTIMIZERS, OptimConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig, lr: float | None = None):
    """AdamW (torch), 8-bit AdamW (bitsandbytes) or Adafactor (transformers, fixed lr)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters to optimize")
    lr = cfg.lr if lr is None else lr
    name = cfg.optimizer.lower()
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon, weight_decay=cfg.weight_decay
        )
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise ImportError("optim.optimizer=adamw8bit needs bitsandbytes: pip install bitsandbytes") from e
        return bnb.optim.AdamW8bit(
            params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon, weight_decay=cfg.weight_decay
        )
    if name == "adafactor":
        from transformers.optimization import Adafactor

        # The official Diffusion-DPO SDXL setting: an explicit lr, no relative step or parameter scaling.
        return Adafactor(
            params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False,
            clip_threshold=1.0, weight_decay=cfg.weight_decay,
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_lr_scheduler(optimizer, cfg: OptimConfig, total_steps: int):
    """Any ``diffusers.optimization`` schedule, stepped once per optimizer step."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        cfg.lr_scheduler, optimizer=optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total_steps
    )
