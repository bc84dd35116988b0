"""Which denoiser blocks recompute their activations in the backward (``model.checkpoint_blocks``).

``model.checkpoint_blocks`` is ``auto`` (the default), a list of dotted sub-module names, or an empty
list / ``none`` (no selective checkpointing). :func:`resolve_checkpoint_blocks` turns the setting and
``model.gradient_checkpointing`` into what :meth:`PipelineAdapter.enable_gradient_checkpointing` gets.

``auto`` (measured, docs/benchmarks.md "256 px"): a UNet (``down_blocks`` / ``up_blocks``) trained
on ``batch x latent_h x latent_w >= AUTO_MIN_POSITIONS`` latent positions per micro-batch checkpoints
only its two highest-resolution blocks (``down_blocks.0`` and the last up block: the full latent
size, where most activation bytes are); below that nothing is checkpointed. On SD1.5 with diffusers'
Diffusion-DPO settings (2 pairs per step, fp32, CPU) no checkpointing kept the step under the
diffusers script's peak memory at 128 px (2 x 16 x 16 = 512) and went over it at 256 px
(2 x 32 x 32 = 2048), where the two blocks bring it back under at a ~1.1x CPU-time cost against 1.2x
for full checkpointing. Networks without UNet blocks (transformers) get nothing from ``auto``.
"""
from __future__ import annotations

from typing import Any

import torch

#: latent positions per micro-batch (examples x latent height x latent width) from which ``auto``
#: checkpoints the highest-resolution UNet blocks: between the measured 512 (fits without) and 2048
#: (does not); see the module docstring.
AUTO_MIN_POSITIONS = 1024
AUTO = "auto"


def checkpoint_blocks_value(value: Any) -> str | list[str]:
    """The config value of ``model.checkpoint_blocks``: ``"auto"``, or a list of dotted names
    (``none`` / null / ``[]`` -> ``[]``). Raises ``ValueError`` on anything else."""
    if value is None or value == "none":
        return []
    if value == AUTO:
        return AUTO
    if isinstance(value, str):
        raise ValueError(f"expected auto, none or a list of block names (e.g. [down_blocks.0, up_blocks.3]), got {value!r}")
    items = list(value)
    if not all(isinstance(b, str) and b for b in items):
        raise ValueError(f"expected a list of block names (e.g. [down_blocks.0, up_blocks.3]), got {items!r}")
    return items


def highest_resolution_blocks(denoiser: torch.nn.Module) -> list[str]:
    """``[down_blocks.0, up_blocks.<last>]`` of a UNet; ``[]`` for networks without UNet blocks."""
    down, up = getattr(denoiser, "down_blocks", None), getattr(denoiser, "up_blocks", None)
    if not down or not up:
        return []
    return ["down_blocks.0", f"up_blocks.{len(up) - 1}"]


def auto_blocks(denoiser: torch.nn.Module, latent_positions: int | None) -> list[str]:
    """What ``auto`` checkpoints for ``latent_positions`` per micro-batch (None: unknown -> nothing)."""
    if latent_positions is None or latent_positions < AUTO_MIN_POSITIONS:
        return []
    return highest_resolution_blocks(denoiser)


def resolve_checkpoint_blocks(setting: str | list[str], full: bool, denoiser: torch.nn.Module,
                              latent_positions: int | None) -> list[str] | None:
    """What to checkpoint: ``None`` nothing; ``[]`` everywhere; a list only those blocks. A list given
    in ``setting`` wins; else ``full`` (``model.gradient_checkpointing``) means everywhere; else
    ``auto`` decides from ``latent_positions``."""
    if setting != AUTO and setting:
        return list(setting)
    if full:
        return []
    return (auto_blocks(denoiser, latent_positions) or None) if setting == AUTO else None
