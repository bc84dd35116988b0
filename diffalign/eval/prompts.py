"""Reading prompt files: ``.txt`` (one prompt per non-empty line), ``.json`` (a list of strings, as
the HPSv2 benchmark files, or of objects with ``prompt``) and ``.jsonl`` (one object with ``prompt``
per line, e.g. GenEval metadata). Every record comes back as a dict with at least ``prompt``; the
whole object is kept so rewards that need metadata (GenEval's rows) get it."""
from __future__ import annotations

import json
import os


def _record(item, where: str) -> dict:
    if isinstance(item, str):
        record = {"prompt": item}
    elif isinstance(item, dict):
        record = dict(item)
    else:
        raise ValueError(f"{where}: expected a prompt string or an object with 'prompt', got {type(item).__name__}")
    if not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
        raise ValueError(f"{where}: missing or empty 'prompt'")
    return record


def read_prompt_file(path: str | os.PathLike) -> list[dict]:
    """Records (dicts with ``prompt``) from a ``.txt``, ``.json`` or ``.jsonl`` file; bad content
    raises ``ValueError`` naming the file (and line or item)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"prompt file {path} not found")
    ext = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8") as fh:
        if ext == ".json":
            try:
                data = json.load(fh)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON list of prompts, got {type(data).__name__}")
            records = [_record(item, f"{path}[{i}]") for i, item in enumerate(data)]
        elif ext == ".jsonl":
            records = []
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
                    records.append(_record(item, f"{path}:{lineno}"))
        else:
            records = [{"prompt": line.strip()} for line in fh if line.strip()]
    if not records:
        raise ValueError(f"{path} holds no prompts")
    return records
