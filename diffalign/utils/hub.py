"""Which hub commit a downloaded file or model came from, for the run's records."""
from __future__ import annotations

import os
import re

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
