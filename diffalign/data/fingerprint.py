"""Stable fingerprints of data on disk, for cache keys (latents, text embeddings).

:func:`fingerprint` hashes a JSON description of the options that shape the outputs together with a
signature of every file involved: by default its resolved path, size and modification time (cheap,
changes whenever a file is rewritten), or with ``content=True`` a SHA-256 of its bytes (survives
copies and touches, costs a full read). A file that does not exist is recorded as missing, so the
fingerprint itself never fails on bad data; loading will.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

__all__ = ["file_signature", "fingerprint"]

_CHUNK = 1 << 20


def _sha256_of_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def file_signature(path: str | os.PathLike, content: bool = False) -> list[Any]:
    """``[path, size, mtime_ns]`` (or ``[path, size, sha256]`` with ``content``); ``[path, "missing"]``
    for a file that does not exist. With ``content`` the path is left out (only the name is kept),
    so a copied dataset keeps its fingerprint."""
    p = Path(path).resolve()
    if not p.is_file():
        return [str(p), "missing"]
    stat = p.stat()
    if content:
        return [p.name, stat.st_size, _sha256_of_file(p)]
    return [str(p), stat.st_size, stat.st_mtime_ns]


def fingerprint(options: dict[str, Any], files: Iterable[str | os.PathLike], content: bool = False) -> str:
    """A 32-hex-digit digest of ``options`` (JSON-serialisable) and the signatures of ``files``
    (deduplicated; order does not matter)."""
    unique = sorted({str(Path(f).resolve()) for f in files})
    payload = {"options": options, "files": [file_signature(f, content) for f in unique], "content": content}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
