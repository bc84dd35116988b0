"""GenEval's prompt metadata: one JSON object per line with ``tag``, ``include`` (clauses with
``class``, ``count`` and optional ``color`` / ``position: [relation, group index]``), ``exclude``
(counting prompts) and ``prompt``. Reading validates every row and names the file and line of a
bad one."""
from __future__ import annotations

import json
import os
from typing import Iterable, Mapping

from diffalign.geneval.vocab import COLOR_NAMES, RELATIONS, TAGS


def validate_row(row, where: str = "row") -> dict:
    """Check one GenEval-format row; raise ``ValueError`` naming ``where`` and the bad key."""
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("tag", "include", "prompt"):
        if key not in row:
            raise ValueError(f"{where}: missing key {key!r}")
    if row["tag"] not in TAGS:
        raise ValueError(f"{where}: unknown tag {row['tag']!r}; expected one of {', '.join(TAGS)}")
    if not isinstance(row["prompt"], str) or not row["prompt"]:
        raise ValueError(f"{where}: 'prompt' must be a non-empty string")
    for key in ("include", "exclude"):
        clauses = row.get(key, [])
        if not isinstance(clauses, list) or (key == "include" and not clauses):
            raise ValueError(f"{where}: {key!r} must be a {'non-empty ' if key == 'include' else ''}list of clauses")
        for i, clause in enumerate(clauses):
            at = f"{where}: {key}[{i}]"
            if not isinstance(clause, Mapping):
                raise ValueError(f"{at} must be an object")
            if not isinstance(clause.get("class"), str):
                raise ValueError(f"{at} needs a string 'class'")
            count = clause.get("count")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{at} needs an integer 'count' >= 1, got {count!r}")
            if "color" in clause and clause["color"] not in COLOR_NAMES:
                raise ValueError(f"{at}: unknown color {clause['color']!r}")
            if "position" in clause:
                pos = clause["position"]
                if key != "include" or not isinstance(pos, (list, tuple)) or len(pos) != 2:
                    raise ValueError(f"{at}: 'position' must be [relation, group index] in an include clause")
                if pos[0] not in RELATIONS:
                    raise ValueError(f"{at}: unknown relation {pos[0]!r}; expected one of {', '.join(RELATIONS)}")
                if isinstance(pos[1], bool) or not isinstance(pos[1], int) or not 0 <= pos[1] < i:
                    raise ValueError(f"{at}: position group {pos[1]!r} must index an earlier include clause")
    return dict(row)


def write_metadata(path: str | os.PathLike, rows: Iterable[Mapping]) -> None:
    """Write rows as GenEval's metadata jsonl (one JSON object per line)."""
    rows = [validate_row(r, f"row {i}") for i, r in enumerate(rows)]
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def read_metadata(path: str | os.PathLike) -> list[dict]:
    """Read a GenEval-format metadata jsonl; blank lines are skipped. Bad JSON or a bad row raises
    ``ValueError`` naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{os.fspath(path)}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
            rows.append(validate_row(row, where))
    return rows
