"""``PromptEmbeds``: the text conditioning of a batch, as the family's network consumes it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch


@dataclass
class PromptEmbeds:
    """Named conditioning tensors for a batch of prompts, all with the batch on dim 0.

    Each family decides its keys (``prompt_embeds`` always; SDXL adds ``pooled_prompt_embeds`` and
    ``add_time_ids``; SD3 ``pooled_prompt_embeds``; ...). Everything a trainer needs is generic:
    indexing, repeating, concatenating, moving and saving to disk for the embedding cache.
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {k: v.shape[0] for k, v in self.tensors.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"PromptEmbeds tensors disagree on the batch size: {sizes}")

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0] if self.tensors else 0

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.tensors[key]
        return PromptEmbeds({k: v[key] for k, v in self.tensors.items()})

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def get(self, key: str, default=None):
        return self.tensors.get(key, default)

    def keys(self):
        return self.tensors.keys()

    def to(self, device=None, dtype=None) -> "PromptEmbeds":
        out = {}
        for k, v in self.tensors.items():
            out[k] = v.to(device=device, dtype=dtype if (dtype is not None and v.is_floating_point()) else None)
        return PromptEmbeds(out)

    def detach(self) -> "PromptEmbeds":
        return PromptEmbeds({k: v.detach() for k, v in self.tensors.items()})

    def repeat(self, n: int) -> "PromptEmbeds":
        """Tile the whole batch ``n`` times: [a, b] -> [a, b, a, b] (the [winners; losers] layout)."""
        return PromptEmbeds({k: torch.cat([v] * n, dim=0) for k, v in self.tensors.items()})

    def repeat_interleave(self, n: int) -> "PromptEmbeds":
        """Repeat each item ``n`` times: [a, b] -> [a, a, b, b] (group sampling layout)."""
        return PromptEmbeds({k: v.repeat_interleave(n, dim=0) for k, v in self.tensors.items()})

    @staticmethod
    def cat(items: Sequence["PromptEmbeds"]) -> "PromptEmbeds":
        keys = list(items[0].tensors)
        for it in items[1:]:
            if list(it.tensors) != keys:
                raise ValueError(f"cannot concatenate PromptEmbeds with keys {keys} and {list(it.tensors)}")
        return PromptEmbeds({k: torch.cat([it.tensors[k] for it in items], dim=0) for k in keys})

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(path))

    @staticmethod
    def load(path: str | os.PathLike, device=None) -> "PromptEmbeds":
        from safetensors.torch import load_file

        return PromptEmbeds(load_file(str(path), device=str(device) if device is not None else "cpu"))

    @staticmethod
    def from_items(items: Iterable[dict[str, torch.Tensor]]) -> "PromptEmbeds":
        items = list(items)
        return PromptEmbeds({k: torch.stack([it[k] for it in items]) for k in items[0]})
