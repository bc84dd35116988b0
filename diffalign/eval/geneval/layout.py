"""GenEval's image folder layout: ``<root>/<00000>/metadata.jsonl`` (that prompt's metadata record)
and ``<root>/<00000>/samples/0000.png, 0001.png...``. GenEval's evaluator reads only sub-folders
named with digits and images named ``<digits>.png``; so does :func:`scan`."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from diffalign.geneval.metadata import validate_row

_IMAGE_NAME = re.compile(r"\d+\.png")


@dataclass(frozen=True)
class SampleFile:
    """One image of the layout: its prompt folder index, image index, path and metadata row."""

    prompt_index: int
    image_index: int
    path: str
    row: dict


def prompt_folder(root: str, index: int) -> str:
    return os.path.join(root, f"{index:05d}")


def sample_path(root: str, index: int, image_index: int) -> str:
    return os.path.join(prompt_folder(root, index), "samples", f"{image_index:04d}.png")


def write_metadata_record(root: str, index: int, row: Mapping) -> None:
    """Create ``<root>/<index>/samples/`` and write the prompt's ``metadata.jsonl``."""
    folder = prompt_folder(root, index)
    os.makedirs(os.path.join(folder, "samples"), exist_ok=True)
    with open(os.path.join(folder, "metadata.jsonl"), "w", encoding="utf-8") as f:
        f.write(json.dumps(dict(row)) + "\n")


def write_layout(root: str, rows: Sequence[Mapping], images: Sequence[Sequence]) -> None:
    """Write every row's folder and its images (PIL images), ``images[i][k]`` -> ``samples/k.png``."""
    if len(rows) != len(images):
        raise ValueError(f"{len(rows)} metadata rows but images for {len(images)} prompts")
    for i, (row, imgs) in enumerate(zip(rows, images)):
        write_metadata_record(root, i, row)
        for k, image in enumerate(imgs):
            image.save(sample_path(root, i, k))


def scan(root: str) -> list[SampleFile]:
    """Every image of a GenEval folder, by prompt folder then image number. Raises ``ValueError``
    naming the folder when a prompt folder has no readable ``metadata.jsonl`` or nothing is found."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} not found")
    found: list[SampleFile] = []
    folders = sorted((name for name in os.listdir(root) if name.isdigit() and os.path.isdir(os.path.join(root, name))), key=int)
    for name in folders:
        folder = os.path.join(root, name)
        meta = os.path.join(folder, "metadata.jsonl")
        if not os.path.isfile(meta):
            raise ValueError(f"{folder}: no metadata.jsonl (GenEval's layout has one per prompt folder)")
        with open(meta, encoding="utf-8") as f:
            try:
                row = json.loads(f.read())
            except json.JSONDecodeError as e:
                raise ValueError(f"{meta}: invalid JSON ({e.msg})") from None
        row = validate_row(row, meta)
        samples = os.path.join(folder, "samples")
        names = [n for n in os.listdir(samples) if _IMAGE_NAME.fullmatch(n)] if os.path.isdir(samples) else []
        names.sort(key=lambda n: int(n[:-4]))
        found += [SampleFile(int(name), int(n[:-4]), os.path.join(samples, n), row) for n in names]
    if not found:
        raise ValueError(f"{root}: no images in GenEval's layout (<root>/<digits>/samples/<digits>.png)")
    return found
