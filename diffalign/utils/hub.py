"""Messages for models that cannot be fetched from the Hugging Face Hub, and which hub commit a
downloaded file or model came from (for the run's records)."""
from __future__ import annotations

import os
import re


def hub_help(name: str, err: Exception) -> str:
    """One line saying why ``name`` could not be fetched and how to get it offline."""
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "yes")
    return (
        f"could not get {name!r}: it is not a local folder, and the hub "
        + ("is disabled (HF_HUB_OFFLINE=1) and the model is not in the local cache" if offline else "lookup failed")
        + f" ({type(err).__name__}: {err}). Download it where you have network access with "
        f"`huggingface-cli download {name} --local-dir DIR` and pass DIR instead."
    )


_SNAPSHOT = re.compile(r"[\\/]snapshots[\\/]([0-9a-f]{40})(?:[\\/]|$)")


def hub_commit(path: str | os.PathLike | None) -> str | None:
    """The commit hash in a hub-cache path (``.../snapshots/<commit>/...``); None for other paths."""
    if path is None:
        return None
    m = _SNAPSHOT.search(os.fspath(path))
    return m.group(1) if m else None


def resolve_model_commit(pretrained: str, revision: str | None = None) -> str | None:
    """The commit of a hub model id in the local hub cache (what ``from_pretrained`` loaded); None
    for a local folder, an embedded pipeline or a model not in the cache."""
    if os.path.isdir(pretrained) or pretrained.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return hub_commit(snapshot_download(pretrained, revision=revision, local_files_only=True))
    except Exception:  # not cached, not a hub id
        return None
