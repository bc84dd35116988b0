"""PickScore v1: ``logit_scale.exp() * cos(image, prompt)`` with the fine-tuned CLIP ViT-H/14.

Model ``yuvalkirstain/PickScore_v1`` (a transformers ``CLIPModel`` folder or hub id); its reference
code preprocesses with the processor of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (224 px, shortest
side + centre crop, bicubic, OpenAI mean / std), which is also the default here when the model folder
has no ``preprocessor_config.json``; pass ``processor=`` to read another. Raw scores are about 18-24
for typical images (Flow-GRPO divides by 26). Differentiable.
"""
from __future__ import annotations

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.hf_clip import HFClipEmbedder

DEFAULT_MODEL = "yuvalkirstain/PickScore_v1"


class PickScore(Reward):
    differentiable = True
    native_range = (0.0, 100.0)

    def __init__(self, model: str = DEFAULT_MODEL, processor: str | None = None, tokenizer: str | None = None, dtype=None,
                 revision: str | None = None):
        super().__init__()
        self.clip = HFClipEmbedder.load(model, "pickscore", processor, tokenizer, dtype, revision=revision)
        self.freeze()

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        return self.clip.model.logit_scale.exp().float() * self.clip.cosine(samples, prompts)
