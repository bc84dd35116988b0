"""Command-line flags shared by the evaluation jobs."""
from __future__ import annotations

import argparse


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """``--steps``, ``--guidance``, ``--height``, ``--width`` (None: the pipeline's or the protocol's)."""
    p.add_argument("--steps", type=int, help="sampling steps (default: the pipeline's shipped setting or the protocol's)")
    p.add_argument("--guidance", type=float, help="CFG scale")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
