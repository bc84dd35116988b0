"""The sampling settings a pipeline folder records beside its weights (``diffalign_sampling.json``:
steps, guidance, size, frames and, for some shapes-world pipelines, the text length)."""
from __future__ import annotations

import json
import os

SAMPLING_FILE = "diffalign_sampling.json"


def read_sampling_file(folder: str) -> dict:
    """The settings in ``<folder>/``:data:`SAMPLING_FILE` (empty when there is none)."""
    path = os.path.join(folder, SAMPLING_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
