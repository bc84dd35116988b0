"""The output folder of a run: one run per folder, never two mixed.

A fresh run (no ``resume``) into a folder that already holds a run's files refuses before anything
is loaded, with one line naming the three ways on: ``resume=latest`` (continue that run),
``overwrite=true`` (replace it) or another ``output_dir``. ``overwrite=true`` removes the old
run's files (and only those: the names below) before the new run writes any, so the folder never
holds pieces of two runs; a folder holding other files is left as it is apart from those names.
"""
from __future__ import annotations

import os
import shutil

from diffalign.config import ConfigError

#: what a run writes into its output folder (trainer, checkpoints, logs, exports, grids).
RUN_FILES = (
    "config.yaml", "train_summary.json", "pytorch_lora_weights.safetensors", "checkpoints", "logs",
    "pipeline", "validation", "samples", "eval",
)


def existing_run_files(output_dir: str) -> list[str]:
    """The run files already in ``output_dir`` (sorted; empty for a missing or unrelated folder)."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(name for name in os.listdir(output_dir) if name in RUN_FILES)


def check_output_dir(output_dir: str, resume: str | None, overwrite: bool) -> None:
    """Refuse (one-line :class:`~diffalign.config.ConfigError`) a fresh run into a folder holding
    another run, unless ``overwrite``; called before the model is loaded."""
    if resume or overwrite:
        return
    found = existing_run_files(output_dir)
    if found:
        raise ConfigError(
            f"output_dir {output_dir} already holds a run ({', '.join(found)}); "
            "continue it with resume=latest, replace it with overwrite=true, or choose another output_dir"
        )


def clear_previous_run(output_dir: str) -> list[str]:
    """Remove the previous run's files from ``output_dir`` (``overwrite=true``); return their names."""
    found = existing_run_files(output_dir)
    for name in found:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return found
