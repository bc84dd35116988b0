"""CLIP score: ``max(scale * cos(image, prompt), 0)`` with a transformers CLIP model.

Defaults follow torchmetrics' ``CLIPScore`` (``openai/clip-vit-large-patch14``, ``scale=100``,
clipped at 0). Hessel et al.'s original CLIPScore is ``scale=2.5`` with ``openai/clip-vit-base-patch32``;
``clamp=False`` gives the raw scaled cosine (T2I-CompBench uses ``scale=1``). Differentiable (the clip
at 0 has zero gradient for negative similarities).
"""
from __future__ import annotations

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.hf_clip import HFClipEmbedder

DEFAULT_MODEL = "openai/clip-vit-large-patch14"


class ClipScore(Reward):
    differentiable = True
    native_range = (0.0, 100.0)

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        processor: str | None = None,
        tokenizer: str | None = None,
        scale: float = 100.0,
        clamp: bool = True,
        dtype=None,
        revision: str | None = None,
    ):
        super().__init__()
        self.clip = HFClipEmbedder.load(model, "clip_score", processor, tokenizer, dtype, revision=revision)
        self.scale = float(scale)
        self.clamp = bool(clamp)
        self.model_name = str(model)
        self.freeze()

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        s = self.scale * self.clip.cosine(samples, prompts)
        return s.clamp(min=0.0) if self.clamp else s
