"""Helpers of the fault-injection suite: a small pairs data set on disk, a tiny-pipeline
offline config, and a snapshot of a folder's files (to prove a failing input changed nothing)."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from diffalign.data import DataConfig, write_pairs_jsonl
from diffalign.train.offline import CacheConfig, OfflineConfig


def pair_rows(n: int = 6, size: int = 32, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"caption": f"a photo of thing {i}", "jpg_0": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
             "jpg_1": rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "label_0": float(i % 2)}
            for i in range(n)]


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory):
    """Six pairs on disk (jsonl + png files); test modules import this fixture by name (a conftest
    here would shadow the top-level ``conftest`` module other tests import from)."""
    root = tmp_path_factory.mktemp("reliability-data") / "pairs"
    write_pairs_jsonl(str(root), pair_rows())
    return root


def offline_config(out, data_path, cache_dir, **kw) -> OfflineConfig:
    cfg = OfflineConfig(output_dir=str(out), max_steps=3, batch_size=2, progress_bar=False, num_threads=1,
                        data=DataConfig(path=str(data_path), resolution=32), cache=CacheConfig(dir=str(cache_dir)), **kw)
    cfg.lora.rank = 4
    cfg.optim.lr = 1e-3
    return cfg


def snapshot(folder) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder``."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found
