"""Test-wide set-up: no network, deterministic threads, and diffalign imported first (it makes
torchvision importable next to a CPU-only torch build)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import diffalign  # noqa: E402,F401  (import before anything pulls in torchvision)

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))


def shared_path(*parts: str) -> str:
    """Path under the ``../shared`` folder next to the checkout (absent on a user's machine)."""
    return os.path.join(SHARED, *parts)
