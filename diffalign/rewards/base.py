"""The one interface every reward implements.

``reward(samples, prompts, metadata=None) -> Tensor[B]``: ``samples`` are RGB pixels in [0, 1]
(see :mod:`diffalign.rewards.inputs` for the accepted forms), ``prompts`` one string per sample (or
one string for all), ``metadata`` one record per sample for rewards that need it (the shapes judge
reads GenEval rows). Subclasses implement :meth:`Reward.score` on the already-converted tensor.

A differentiable reward keeps its whole path (preprocessing included) in torch, so the gradient of
the result reaches the input pixels; a non-differentiable one runs under ``torch.no_grad`` and
returns a detached tensor. Rewards are ``nn.Module`` s so that ``.to(device, dtype)`` moves their
models; they always stay in eval mode and their parameters never require gradients.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from diffalign.rewards.inputs import as_samples


class Reward(nn.Module, ABC):
    """Base class of all rewards. Set the class attributes; implement :meth:`score`."""

    #: registry name (set by ``register`` and by ``load``, which records the name a reward was loaded under).
    name: ClassVar[str] = ""
    #: ``"image"``, ``"video"`` or ``"multiview"`` (see :data:`diffalign.rewards.inputs.MODALITIES`).
    modality: str = "image"
    #: whether gradients of the result reach the input pixels.
    differentiable: bool = False
    higher_is_better: bool = True
    requires_prompt: bool = True
    requires_metadata: bool = False
    #: typical range of raw scores, for documentation and sanity checks (None: unbounded / unknown).
    native_range: tuple[float, float] | None = None

    @abstractmethod
    def score(self, samples: torch.Tensor, prompts: list[str], metadata: list | None) -> torch.Tensor:
        """Score a batch already converted to float pixels in [0, 1]; return a [B] tensor."""

    # ------------------------------------------------------------------ calling convention
    def forward(self, samples: Any, prompts: str | Sequence[str] | None = None, metadata: Sequence | None = None) -> torch.Tensor:
        if self.modality == "image" and getattr(samples, "ndim", 0) == 5:
            raise ValueError(
                f"reward {self.label!r} scores images [B,3,H,W], got {tuple(samples.shape)}; for videos or multi-view "
                f"samples wrap it: diffalign.rewards.load('video' or 'multiview', reward={self.label!r})"
            )
        x = as_samples(samples, self.modality)
        batch = x.shape[0]
        prompt_list = self._prompts(prompts, batch)
        meta = self._metadata(metadata, batch)
        if self.differentiable:
            out = self.score(x, prompt_list, meta)
        else:
            with torch.no_grad():
                out = self.score(x, prompt_list, meta)
            out = out.detach()
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (batch,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RuntimeError(f"reward {self.label!r} returned {got}; expected a tensor of shape ({batch},)")
        return out.to(x.device)

    def _prompts(self, prompts, batch: int) -> list[str]:
        if prompts is None:
            if self.requires_prompt:
                raise ValueError(f"reward {self.label!r} needs one prompt per sample")
            return [""] * batch
        if isinstance(prompts, str):
            return [prompts] * batch
        prompts = list(prompts)
        if len(prompts) != batch:
            raise ValueError(f"reward {self.label!r}: {len(prompts)} prompts for {batch} samples")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise TypeError(f"reward {self.label!r}: prompts[{i}] is {type(p).__name__}, not str")
        return prompts

    def _metadata(self, metadata, batch: int) -> list | None:
        if metadata is None:
            if self.requires_metadata:
                raise ValueError(f"reward {self.label!r} needs metadata: one record per sample")
            return None
        metadata = list(metadata)
        if len(metadata) != batch:
            raise ValueError(f"reward {self.label!r}: {len(metadata)} metadata records for {batch} samples")
        return metadata

    # ------------------------------------------------------------------ module behaviour
    def train(self, mode: bool = True) -> "Reward":
        """Rewards are frozen models: they always stay in eval mode (no dropout)."""
        return super().train(False)

    def freeze(self) -> "Reward":
        """Eval mode and ``requires_grad=False`` on every parameter (called by every loader)."""
        self.requires_grad_(False)
        return self.eval()

    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    def extra_repr(self) -> str:
        return (
            f"name={self.label!r}, modality={self.modality}, differentiable={self.differentiable}, "
            f"higher_is_better={self.higher_is_better}"
        )

