"""Finding and reading reward-model files: local path first, then the hub (offline mode honoured).

- :func:`resolve_file`: an explicit ``path`` (the file itself, or a folder holding it) wins; without
  one the file comes from a Hugging Face hub repository, from the local cache only when
  ``HF_HUB_OFFLINE`` is set. A missing file raises ``FileNotFoundError`` naming it and the command
  that downloads it.
- :func:`read_state_dict`: ``.safetensors`` with safetensors, anything else with
  ``torch.load(weights_only=True)`` (never unpickling arbitrary objects); optional nested key
  (``"state_dict"``) and ``module.`` prefix stripping.
- :func:`load_exact`: load a state dict into a module, failing with the list of missing /
  unexpected keys, except keys the original model carries but does not use (given explicitly).
"""
from __future__ import annotations

import os
import pickle
from typing import Iterable, Mapping

import torch
from torch import nn

_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for cache-only hub access (read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def download_hint(repo_id: str, filename: str | None = None) -> str:
    what = f"{repo_id} {filename}" if filename else repo_id
    return f"Download it where you have network access with `huggingface-cli download {what} --local-dir DIR` and pass path=DIR."


def resolve_file(path: str | os.PathLike | None, filename: str, repo_id: str, what: str, revision: str | None = None) -> str:
    """Local path of ``filename`` for the reward ``what`` (see the module docstring); ``revision``
    (a branch, tag or commit) pins the hub download."""
    if path is not None:
        path = os.path.expanduser(os.fspath(path))
        if os.path.isdir(path):
            path = os.path.join(path, filename)
        if os.path.isfile(path):
            return path
        raise FileNotFoundError(f"{what}: {path} does not exist (expected the file {filename}). {download_hint(repo_id, filename)}")
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename, revision=revision, local_files_only=hub_offline())
    except Exception as e:  # offline cache miss, missing repo, network, auth
        where = "the local hub cache (HF_HUB_OFFLINE is set)" if hub_offline() else f"the hub repository {repo_id}"
        raise FileNotFoundError(
            f"{what}: could not get {filename} from {where}: {type(e).__name__}: {e}. {download_hint(repo_id, filename)}"
        ) from e


def read_state_dict(path: str, key: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file; ``key`` selects a nested dict when the file has one under it."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError) as e:
            raise ValueError(
                f"{path} cannot be read with torch.load(weights_only=True): it pickles Python objects, not only tensors "
                f"({type(e).__name__}: {e}). diffalign does not unpickle arbitrary objects. If you trust the file, convert it "
                "once yourself: `sd = torch.load(path, weights_only=False)`, take its state dict, and save it with "
                "`safetensors.torch.save_file(sd, 'model.safetensors')`; then pass that file."
            ) from e
    if key is not None and isinstance(state, Mapping) and key in state:
        state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors{f' (under key {key!r})' if key else ''}")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, ignore_prefixes: Iterable[str] = ()) -> None:
    """``module.load_state_dict(state)`` requiring every key to match, except unexpected keys that start
    with one of ``ignore_prefixes`` or end with one (parts of the original model that scoring does not use)."""
    ignore = tuple(ignore_prefixes)
    kept = {k: v for k, v in state.items() if not (k.startswith(ignore) or k.endswith(ignore))} if ignore else dict(state)
    try:
        result = module.load_state_dict(kept, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{source} does not match the expected model layout: {e}") from e
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} keys (e.g. {result.missing_keys[:5]})")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} keys (e.g. {result.unexpected_keys[:5]})")
    if problems:
        raise ValueError(f"{source} does not match the expected model layout: " + "; ".join(problems))
