"""Prompts of the moving-shapes world: GenEval-style rows plus time, in five categories, with a
fixed train/test split of disjoint prompts (as :mod:`diffalign.shapes.prompts` has for images).

Rows keep GenEval's keys (``tag``, ``include`` with ``class`` / ``count`` / optional ``color``,
``exclude``, ``prompt``) and add time to the include clauses:

- ``motion``: ``"left" | "right" | "up" | "down" | "static"`` -- the object (or, for a count, the
  group's centroid) moves along a straight line at constant speed in that direction, or stays put;
- ``passes``: ``[direction, group]`` -- over the clip the object passes the object of include
  clause ``group``: ``"left to right"`` means it starts left of it and ends right of it.

Categories (:data:`VIDEO_CATEGORIES`):

- ``motion``: one coloured object moving in a direction or static ("a video of a red circle moving left");
- ``two_motion``: two objects moving in different directions;
- ``constant_count``: N objects of one shape moving together; the count must stay N in every frame;
- ``appearance``: two coloured objects moving freely; neither may change colour or shape (no morphing);
- ``passing``: a relation that changes over time ("a red circle passing a blue square from left to right").
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Iterable

from diffalign.shapes.vocab import COLOR_NAMES, COUNTS, NUMBER_WORDS, SHAPES, plural, with_article

VIDEO_CATEGORIES: tuple[str, ...] = ("motion", "two_motion", "constant_count", "appearance", "passing")
MOTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "static": (0, 0)}
"""Motion name -> unit direction (x, y), image y pointing down."""
PASS_DIRECTIONS: dict[str, str] = {
    "left to right": "right", "right to left": "left", "top to bottom": "down", "bottom to top": "up",
}
"""Passing direction -> the motion of the passing object."""
TEST_FRACTION = 0.2
SPLITS = ("train", "test")


def motion_phrase(motion: str) -> str:
    return "standing still" if motion == "static" else f"moving {motion}"


def motion_row(shape: str, color: str, motion: str) -> dict:
    return {"tag": "motion", "include": [{"class": shape, "count": 1, "color": color, "motion": motion}],
            "prompt": f"a video of {with_article(color)} {shape} {motion_phrase(motion)}"}


def two_motion_row(shape_a: str, motion_a: str, shape_b: str, motion_b: str) -> dict:
    return {"tag": "two_motion",
            "include": [{"class": shape_a, "count": 1, "motion": motion_a}, {"class": shape_b, "count": 1, "motion": motion_b}],
            "prompt": f"a video of {with_article(shape_a)} {motion_phrase(motion_a)} and "
                      f"{with_article(shape_b)} {motion_phrase(motion_b)}"}


def constant_count_row(shape: str, count: int, motion: str) -> dict:
    return {"tag": "constant_count", "include": [{"class": shape, "count": count, "motion": motion}],
            "exclude": [{"class": shape, "count": count + 1}],
            "prompt": f"a video of {NUMBER_WORDS[count]} {plural(shape)} {motion_phrase(motion)}"}


def appearance_row(shape_a: str, color_a: str, shape_b: str, color_b: str) -> dict:
    return {"tag": "appearance",
            "include": [{"class": shape_a, "count": 1, "color": color_a}, {"class": shape_b, "count": 1, "color": color_b}],
            "prompt": f"a video of {with_article(color_a)} {shape_a} and {with_article(color_b)} {shape_b} "
                      "that keep their colours and shapes"}


def passing_row(shape_a: str, color_a: str, direction: str, shape_b: str, color_b: str) -> dict:
    """'a video of a <A> passing a <B> from <direction>': include [B (static), A passing B]."""
    return {"tag": "passing",
            "include": [{"class": shape_b, "count": 1, "color": color_b, "motion": "static"},
                        {"class": shape_a, "count": 1, "color": color_a, "passes": [direction, 0]}],
            "prompt": f"a video of {with_article(color_a)} {shape_a} passing {with_article(color_b)} {shape_b} "
                      f"from {direction}"}


def _pairs(items):
    return [(a, b) for a in items for b in items if a != b]


@lru_cache(maxsize=None)
def _universe(tag: str) -> tuple[str, ...]:
    if tag == "motion":
        rows = [motion_row(s, c, m) for s in SHAPES for c in COLOR_NAMES for m in MOTIONS]
    elif tag == "two_motion":
        rows = [two_motion_row(a, ma, b, mb) for a, b in _pairs(SHAPES) for ma, mb in _pairs(tuple(MOTIONS))]
    elif tag == "constant_count":
        rows = [constant_count_row(s, n, m) for s in SHAPES for n in COUNTS for m in MOTIONS]
    elif tag == "appearance":
        rows = [appearance_row(a, ca, b, cb) for a, b in _pairs(SHAPES) for ca, cb in _pairs(COLOR_NAMES)]
    elif tag == "passing":
        rows = [passing_row(a, ca, d, b, cb) for a, b in _pairs(SHAPES) for ca, cb in _pairs(COLOR_NAMES)
                for d in PASS_DIRECTIONS]
    else:
        raise ValueError(f"unknown video category {tag!r}; expected one of {', '.join(VIDEO_CATEGORIES)}")
    return tuple(json.dumps(r) for r in rows)


def all_video_rows(tag: str) -> list[dict]:
    """Every distinct prompt row of one video category."""
    return [json.loads(r) for r in _universe(tag)]


@lru_cache(maxsize=None)
def _test_prompts(tag: str) -> frozenset[str]:
    prompts = sorted((json.loads(r)["prompt"] for r in _universe(tag)),
                     key=lambda p: hashlib.sha256(p.encode("utf-8")).hexdigest())
    n_test = min(len(prompts) - 1, max(1, round(TEST_FRACTION * len(prompts))))
    return frozenset(prompts[:n_test])


def video_prompt_split(prompt: str, tag: str) -> str:
    """'train' or 'test': the fixed held-out split (the first :data:`TEST_FRACTION` of a category's
    prompts ordered by a hash of the text). Train and test share no prompt."""
    return "test" if prompt in _test_prompts(tag) else "train"


def video_prompts(split: str, categories: Iterable[str] | None = None) -> list[dict]:
    """All rows of ``split`` ('train' or 'test') in ``categories`` (default: all of
    :data:`VIDEO_CATEGORIES`); each row has ``prompt``, ``tag`` and the judge's metadata."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    cats = VIDEO_CATEGORIES if categories is None else tuple([categories] if isinstance(categories, str) else categories)
    if not cats:
        raise ValueError("categories must not be empty")
    return [r for tag in cats for r in all_video_rows(tag) if video_prompt_split(r["prompt"], tag) == split]


def sample_video_rows(per_category: int, seed: int = 0, split: str = "test",
                      categories: Iterable[str] | None = None) -> list[dict]:
    """``per_category`` rows of every category of ``split`` (a seeded draw without replacement, with
    replacement when a category holds fewer), interleaved (one row of each category in turn), so
    every prefix is balanced over the categories."""
    import numpy as np

    cats = VIDEO_CATEGORIES if categories is None else tuple(categories)
    picks = []
    for c, tag in enumerate(cats):
        pool = video_prompts(split, [tag])
        rng = np.random.default_rng([seed, c])
        picks.append([pool[int(i)] for i in rng.choice(len(pool), per_category, replace=per_category > len(pool))])
    return [group[i] for i in range(per_category) for group in picks]
