"""Loading diffusers pipelines from a hub id or a local folder, with errors that say what to do."""
from __future__ import annotations

import json
import os
from typing import Any

from diffalign.utils.hub import hub_help


def read_model_index(name_or_path: str, **hub_kwargs) -> dict[str, Any]:
    """``model_index.json`` of a local diffusers folder or a hub repository."""
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, "model_index.json")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{name_or_path} is a folder but has no model_index.json: it is not a diffusers pipeline folder "
                "(save one with pipe.save_pretrained(folder))"
            )
    elif os.path.exists(name_or_path):
        raise ValueError(f"{name_or_path} is a file; expected a diffusers pipeline folder or a hub id")
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(name_or_path, "model_index.json", **hub_kwargs)
        except Exception as e:  # offline, missing repo, auth...
            raise FileNotFoundError(hub_help(name_or_path, e)) from e
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e


def load_pipeline(pipeline_class, name_or_path, *, torch_dtype=None, **kwargs):
    """``pipeline_class.from_pretrained`` with a clear message when files cannot be found."""
    name_or_path = str(name_or_path)
    if not os.path.isdir(name_or_path) and os.path.exists(name_or_path):
        raise ValueError(f"{name_or_path} is a file; expected a diffusers pipeline folder or a hub id")
    if torch_dtype is not None:
        kwargs[_dtype_keyword()] = torch_dtype
    try:
        return pipeline_class.from_pretrained(name_or_path, **kwargs)
    except (OSError, EnvironmentError) as e:
        if os.path.isdir(name_or_path):
            raise FileNotFoundError(f"could not load a {pipeline_class.__name__} from {name_or_path}: {e}") from e
        raise FileNotFoundError(hub_help(name_or_path, e)) from e


def _dtype_keyword() -> str:
    """Newer diffusers name the load dtype ``dtype`` and deprecate ``torch_dtype``."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"
