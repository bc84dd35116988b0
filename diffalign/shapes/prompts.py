"""GenEval-format prompts for the shapes world: the full prompt set per category, a fixed
train/test split with disjoint prompts, seeded sampling, and a metadata jsonl reader/writer.

Rows have GenEval's keys and phrasing: ``tag``, ``include`` (``class``, ``count``, optional
``color`` and ``position: [relation, group index]``), ``exclude`` (counting only) and ``prompt``.
The metadata reader/writer (``read_metadata``, ``write_metadata``, ``validate_row``) is GenEval's
own, :mod:`diffalign.geneval.metadata`, re-exported here.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from diffalign.geneval.metadata import read_metadata, validate_row, write_metadata  # noqa: F401 (re-exported)
from diffalign.shapes.vocab import (
    CATEGORIES,
    COLOR_NAMES,
    COUNTS,
    NUMBER_WORDS,
    RELATIONS,
    SHAPES,
    plural,
    with_article,
)

TEST_FRACTION = 0.2
"""Share of each category's prompts held out for evaluation (at least one prompt per category)."""
SPLITS = ("train", "test")


def single_object_row(shape: str) -> dict:
    return {"tag": "single_object", "include": [{"class": shape, "count": 1}], "prompt": f"a photo of {with_article(shape)}"}


def two_object_row(shape_a: str, shape_b: str) -> dict:
    return {
        "tag": "two_object",
        "include": [{"class": shape_a, "count": 1}, {"class": shape_b, "count": 1}],
        "prompt": f"a photo of {with_article(shape_a)} and {with_article(shape_b)}",
    }


def counting_row(shape: str, count: int) -> dict:
    return {
        "tag": "counting",
        "include": [{"class": shape, "count": count}],
        "exclude": [{"class": shape, "count": count + 1}],
        "prompt": f"a photo of {NUMBER_WORDS[count]} {plural(shape)}",
    }


def colors_row(shape: str, color: str) -> dict:
    return {
        "tag": "colors",
        "include": [{"class": shape, "count": 1, "color": color}],
        "prompt": f"a photo of {with_article(color)} {shape}",
    }


def position_row(shape_b: str, relation: str, shape_a: str) -> dict:
    """'a photo of a B <relation> a A': include [A, B with position [relation, 0]] (GenEval's order)."""
    return {
        "tag": "position",
        "include": [{"class": shape_a, "count": 1}, {"class": shape_b, "count": 1, "position": [relation, 0]}],
        "prompt": f"a photo of {with_article(shape_b)} {relation} {with_article(shape_a)}",
    }


def color_attr_row(shape_a: str, color_a: str, shape_b: str, color_b: str) -> dict:
    return {
        "tag": "color_attr",
        "include": [
            {"class": shape_a, "count": 1, "color": color_a},
            {"class": shape_b, "count": 1, "color": color_b},
        ],
        "prompt": f"a photo of {with_article(color_a)} {shape_a} and {with_article(color_b)} {shape_b}",
    }


def _pairs(items: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in items for b in items if a != b]


@lru_cache(maxsize=None)
def _universe(tag: str) -> tuple[str, ...]:
    if tag == "single_object":
        rows = [single_object_row(s) for s in SHAPES]
    elif tag == "two_object":
        rows = [two_object_row(a, b) for a, b in _pairs(SHAPES)]
    elif tag == "counting":
        rows = [counting_row(s, n) for s in SHAPES for n in COUNTS]
    elif tag == "colors":
        rows = [colors_row(s, c) for s in SHAPES for c in COLOR_NAMES]
    elif tag == "position":
        rows = [position_row(b, r, a) for a, b in _pairs(SHAPES) for r in RELATIONS]
    elif tag == "color_attr":
        rows = [color_attr_row(a, ca, b, cb) for a, b in _pairs(SHAPES) for ca, cb in _pairs(COLOR_NAMES)]
    else:
        raise ValueError(f"unknown category {tag!r}; expected one of {', '.join(CATEGORIES)}")
    return tuple(json.dumps(r) for r in rows)


def all_rows(tag: str) -> list[dict]:
    """Every distinct prompt row of one category (GenEval's constraints: distinct classes in
    two-object/position/color_attr prompts, distinct colours in color_attr prompts)."""
    return [json.loads(r) for r in _universe(tag)]


def _split_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


@lru_cache(maxsize=None)
def _test_prompts(tag: str) -> frozenset[str]:
    prompts = sorted((json.loads(r)["prompt"] for r in _universe(tag)), key=_split_key)
    n_test = min(len(prompts) - 1, max(1, round(TEST_FRACTION * len(prompts))))
    return frozenset(prompts[:n_test])


def prompt_split(prompt: str, tag: str) -> str:
    """'train' or 'test': the fixed held-out split of ``tag``'s prompts (ordered by a hash of the
    prompt text, the first :data:`TEST_FRACTION` of them held out). Train and test share no prompt."""
    return "test" if prompt in _test_prompts(tag) else "train"


def split_rows(split: str, categories: Iterable[str] | None = None) -> list[dict]:
    """All rows of ``split`` ('train' or 'test') in the given categories (default: all six)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    cats = _check_categories(categories)
    return [r for tag in cats for r in all_rows(tag) if prompt_split(r["prompt"], tag) == split]


def _check_categories(categories: Iterable[str] | None) -> tuple[str, ...]:
    if categories is None:
        return CATEGORIES
    cats = tuple([categories] if isinstance(categories, str) else categories)
    for c in cats:
        if c not in CATEGORIES:
            raise ValueError(f"unknown category {c!r}; expected one of {', '.join(CATEGORIES)}")
    if not cats:
        raise ValueError("categories must not be empty")
    return cats


def sample_rows(
    n: int, seed: int = 0, categories: Iterable[str] | None = None, split: str | None = None
) -> list[dict]:
    """``n`` GenEval-format rows, balanced over ``categories`` (default all six, in turn).

    Within a category, prompts are drawn without replacement in a seeded random order and the
    order is redrawn once all are used, so rows are distinct while ``n`` allows; beyond that a
    category's prompts repeat (balance is kept) and a warning says where. ``split``
    ('train' / 'test') restricts to the held-out split's prompts. Same arguments, same rows.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    cats = _check_categories(categories)
    rng = np.random.default_rng(seed)
    pools = {}
    for tag in cats:
        rows = all_rows(tag) if split is None else split_rows(split, [tag])
        pools[tag] = rows
    order = [cats[i % len(cats)] for i in range(n)]
    rng.shuffle(order)
    short = {tag: (order.count(tag), len(pools[tag])) for tag in cats if order.count(tag) > len(pools[tag])}
    if short:
        import warnings

        where = f"split {split!r}" if split else "the prompt set"
        warnings.warn(f"sample_rows({n}): {where} has fewer prompts than rows in "
                      + ", ".join(f"{tag} ({have} prompts for {want} rows)" for tag, (want, have) in short.items())
                      + "; prompts repeat there to keep the categories balanced", stacklevel=2)
    queues: dict[str, list[int]] = {tag: [] for tag in cats}
    out = []
    for tag in order:
        if not queues[tag]:
            queues[tag] = list(rng.permutation(len(pools[tag])))
        out.append(json.loads(json.dumps(pools[tag][queues[tag].pop()])))
    return out
