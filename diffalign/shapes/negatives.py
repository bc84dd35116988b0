"""Near misses and distractors: rows whose scenes fail (or still pass) another row.

``near_miss_row(row, kind, rng)`` changes one thing about ``row`` so that any scene drawn for the
changed row is wrong for the original under GenEval's rules (a wrong count, colour, relation or
shape, or a missing object). ``with_distractor(row, rng)`` adds an object of a shape the row does
not mention, which GenEval's rules ignore. Both serve as known-answer cases for the judge and as
losers/winners for synthetic preference pairs.
"""
from __future__ import annotations

import copy
from typing import Mapping

import numpy as np

from diffalign.shapes.vocab import COLOR_NAMES, RELATIONS, SHAPES

NEAR_MISS_KINDS = ("count", "color", "swap_colors", "position", "shape", "missing")
MAX_COUNT = 5


def near_miss_kinds(row: Mapping) -> list[str]:
    """The kinds of near miss that apply to ``row``."""
    include = row["include"]
    kinds = []
    if row["tag"] == "counting":
        kinds.append("count")
    if any("color" in c for c in include):
        kinds.append("color")
    colors = [c.get("color") for c in include]
    if len(include) == 2 and None not in colors and colors[0] != colors[1]:
        kinds.append("swap_colors")
    if any("position" in c for c in include):
        kinds.append("position")
    if len({c["class"] for c in include}) < len(SHAPES):
        kinds.append("shape")
    if len(include) > 1:
        kinds.append("missing")
    return kinds


def _pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def near_miss_row(row: Mapping, kind: str, rng: np.random.Generator | int | None = None) -> dict:
    """A copy of ``row`` changed by one ``kind`` of mistake (see :func:`near_miss_kinds`); every
    scene of the result fails the original row. Only ``include`` matters for drawing scenes."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if kind not in near_miss_kinds(row):
        raise ValueError(f"near miss {kind!r} does not apply to {row.get('prompt', row)!r}; "
                         f"applicable: {', '.join(near_miss_kinds(row))}")
    out = copy.deepcopy(dict(row))
    out.pop("exclude", None)
    include = out["include"]
    if kind == "count":
        n = include[0]["count"]
        include[0]["count"] = _pick(rng, [m for m in (n - 1, n + 1) if 1 <= m <= MAX_COUNT])
    elif kind == "color":
        clause = _pick(rng, [c for c in include if "color" in c])
        clause["color"] = _pick(rng, [c for c in COLOR_NAMES if c != clause["color"]])
    elif kind == "swap_colors":
        include[0]["color"], include[1]["color"] = include[1]["color"], include[0]["color"]
    elif kind == "position":
        clause = _pick(rng, [c for c in include if "position" in c])
        clause["position"] = [_pick(rng, [r for r in RELATIONS if r != clause["position"][0]]), clause["position"][1]]
    elif kind == "shape":
        used = {c["class"] for c in include}
        _pick(rng, include)["class"] = _pick(rng, [s for s in SHAPES if s not in used])
    elif kind == "missing":
        keep = int(rng.integers(len(include)))
        clause = {k: v for k, v in include[keep].items() if k != "position"}
        out["include"] = [clause]
    return out


def with_distractor(row: Mapping, rng: np.random.Generator | int | None = None) -> dict:
    """A copy of ``row`` with one more object, of a shape the row does not mention, in a random
    colour. Its scenes still satisfy the original row under GenEval's rules."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = copy.deepcopy(dict(row))
    used = {c["class"] for c in out["include"]} | {c["class"] for c in out.get("exclude", [])}
    free = [s for s in SHAPES if s not in used]
    if not free:
        raise ValueError(f"no shape left for a distractor in {row.get('prompt', row)!r}")
    out["include"].append({"class": _pick(rng, free), "count": 1})
    return out
