"""Encode a dataset once (VAE latents + text conditioning) and train from disk afterwards.

``LatentCache.build(...)`` runs :func:`encode_batch` over the dataset in order and writes shards
``CACHE/<fingerprint>/shard-00000.safetensors`` ... of per-example tensors; ``cache[i]`` reads one
example back lazily (safetensors slices), so even Pick-a-Pic-sized sets never sit in memory. The
fingerprint covers the model (path, revision, family, VAE and text-encoder configs), the dataset
(its own fingerprint: files + options) and the cache format, so a changed model, resolution or data
gets a new folder. Each shard is written atomically; ``complete.json`` marks a finished cache, so an
interrupted build resumes from the shards already written. Several processes split the shards.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable

import torch

CACHE_FORMAT = 1
COMPLETE = "complete.json"


def default_cache_root() -> str:
    base = os.environ.get("DIFFALIGN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "diffalign"
    )
    return os.path.join(base, "encoded")


def model_fingerprint(adapter, pretrained: str, revision: str | None = None) -> dict[str, Any]:
    parts: dict[str, Any] = {"pretrained": os.path.abspath(pretrained) if os.path.exists(pretrained) else pretrained,
                             "revision": revision, "family": adapter.family}
    for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(adapter.pipe, name, None)
        if module is not None and hasattr(module, "config"):
            cfg = module.config
            parts[name] = cfg.to_json_string() if hasattr(cfg, "to_json_string") else json.dumps(dict(cfg), sort_keys=True, default=str)
            # weights matter too: a cheap content probe of the first parameters
            probe = [p.detach().float().flatten()[:64].cpu() for p in list(module.parameters())[:4]]
            parts[name + "_probe"] = hashlib.sha256(torch.cat(probe).numpy().tobytes()).hexdigest()
    return parts


def cache_key(model_parts: dict[str, Any], dataset_fingerprint: str, extra: dict[str, Any] | None = None) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "model": model_parts, "data": dataset_fingerprint, **(extra or {})},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class LatentCache:
    def __init__(self, folder: str):
        self.folder = folder
        with open(os.path.join(folder, COMPLETE), encoding="utf-8") as f:
            meta = json.load(f)
        self.length = int(meta["length"])
        self.shard_size = int(meta["shard_size"])
        self._handles: dict[int, Any] = {}

    @staticmethod
    def is_complete(folder: str) -> bool:
        return os.path.exists(os.path.join(folder, COMPLETE))

    @classmethod
    def build(
        cls,
        folder: str,
        length: int,
        encode_range: Callable[[int, int], dict[str, torch.Tensor]],
        shard_size: int = 256,
        process_index: int = 0,
        num_processes: int = 1,
        wait: Callable[[], None] = lambda: None,
        progress: bool = True,
    ) -> "LatentCache":
        """Write every missing shard (this process's share), then open the cache.

        ``encode_range(start, stop)`` returns the encoded batch-first dict of examples [start, stop).
        ``wait`` is a barrier across processes (``accelerator.wait_for_everyone``).
        """
        from safetensors.torch import save_file
        from tqdm.auto import tqdm

        os.makedirs(folder, exist_ok=True)
        if not cls.is_complete(folder):
            num_shards = (length + shard_size - 1) // shard_size
            mine = [s for s in range(num_shards) if s % num_processes == process_index]
            for s in tqdm(mine, desc="caching latents", disable=not progress or process_index != 0):
                path = os.path.join(folder, f"shard-{s:05d}.safetensors")
                if os.path.exists(path):
                    continue
                start, stop = s * shard_size, min(length, (s + 1) * shard_size)
                tensors = {k: v.detach().contiguous().cpu() for k, v in encode_range(start, stop).items()}
                tmp = path + f".tmp{os.getpid()}"
                save_file(tensors, tmp)
                os.replace(tmp, path)
            wait()
            if process_index == 0:
                with open(os.path.join(folder, COMPLETE), "w", encoding="utf-8") as f:
                    json.dump({"length": length, "shard_size": shard_size, "format": CACHE_FORMAT}, f)
            wait()
        return cls(folder)

    def __len__(self) -> int:
        return self.length

    def _shard(self, s: int):
        if s not in self._handles:
            from safetensors import safe_open

            self._handles[s] = safe_open(os.path.join(self.folder, f"shard-{s:05d}.safetensors"), framework="pt")
        return self._handles[s]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"cache index {index} out of range [0, {self.length})")
        s, offset = divmod(index, self.shard_size)
        handle = self._shard(s)
        return {k: handle.get_slice(k)[offset : offset + 1][0] for k in handle.keys()}

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        items = [self[i] for i in indices]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
