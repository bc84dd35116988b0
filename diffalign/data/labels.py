"""Parse stored labels into the normalised forms the examples carry.

Pure functions of one stored value; they raise ``ValueError`` with a short reason and the datasets
add where the value came from (file, row, column).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = [
    "IMAGE_0_WINS",
    "IMAGE_1_WINS",
    "TIE",
    "pair_outcome",
    "probability",
    "desirable_flag",
    "ranks_to_scores",
    "list_scores",
    "segment_labels",
    "as_caption",
    "check_image_list",
]

IMAGE_0_WINS, IMAGE_1_WINS, TIE = "image_0", "image_1", "tie"


def _number(value: Any, name: str) -> float:
    if value is None or isinstance(value, str) or not isinstance(value, (int, float)):
        what = "missing" if value is None else f"not a number: {value!r}"
        raise ValueError(f"{name} is {what}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} is missing (NaN)")
    return value


def pair_outcome(label_0: Any) -> str:
    """Pick-a-Pic ``label_0``: 1 -> image 0 preferred, 0 -> image 1 preferred, 0.5 -> tie."""
    value = _number(label_0, "label_0")
    if value == 1.0:
        return IMAGE_0_WINS
    if value == 0.0:
        return IMAGE_1_WINS
    if value == 0.5:
        return TIE
    raise ValueError(f"label_0 must be 0, 0.5 or 1, got {label_0!r}")


def probability(value: Any, name: str) -> float:
    """A probability in [0, 1] (soft labels)."""
    p = _number(value, name)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return p


_TRUE = {"true", "yes", "desirable", "1"}
_FALSE = {"false", "no", "undesirable", "0"}


def desirable_flag(value: Any) -> bool:
    """KTO label: a bool, 0/1, or one of the words true/false, yes/no, desirable/undesirable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"desirable label must be true/false, got {value!r}")
    number = _number(value, "desirable label")
    if number in (0.0, 1.0):
        return number == 1.0
    raise ValueError(f"desirable label must be true/false or 0/1, got {value!r}")


def _number_list(values: Any, name: str) -> list[float]:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{name} must be a list, got {type(values).__name__}")
    out = []
    for k, v in enumerate(values):
        x = _number(v, f"{name}[{k}]")
        if not math.isfinite(x):
            raise ValueError(f"{name}[{k}] must be finite, got {v!r}")
        out.append(x)
    return out


def list_scores(values: Any, size: int) -> list[float]:
    """Per-image preference scores of a ranked list (higher = better), one per image."""
    scores = _number_list(values, "scores")
    if len(scores) != size:
        raise ValueError(f"scores has {len(scores)} entries for {size} images")
    return scores


def ranks_to_scores(ranks: Any, size: int) -> list[float]:
    """Ranks (1 = best; lower is better; ties allowed) -> scores in [0, 1], higher = better.

    Score of item i = (number of items ranked strictly worse + 0.5 x number ranked equal, i excluded)
    / (K - 1): the fraction of the other items it beats, the same scale as Syn-Pic's win fraction
    phi that RankDPO's gain 2**phi expects. Strict ranks 1..K give (K - rank) / (K - 1).
    """
    r = _number_list(ranks, "ranks")
    if len(r) != size:
        raise ValueError(f"ranks has {len(r)} entries for {size} images")
    if size < 2:
        raise ValueError(f"a ranked list needs at least 2 images, got {size}")
    return [
        (sum(1.0 for other in r if other > mine) + 0.5 * (sum(1.0 for other in r if other == mine) - 1)) / (size - 1)
        for mine in r
    ]


def segment_labels(values: Any) -> list[int]:
    """DenseDPO per-segment labels: +1 video 0 wins, -1 video 1 wins, 0 tie; at least one segment."""
    labels = _number_list(values, "segment_labels")
    if not labels:
        raise ValueError("segment_labels is empty")
    bad = [f"[{k}]={v!r}" for k, v in enumerate(labels) if v not in (1.0, -1.0, 0.0)]
    if bad:
        raise ValueError(f"segment_labels must be +1, -1 or 0, got {', '.join(bad)}")
    return [int(v) for v in labels]


def as_caption(value: Any, name: str = "caption") -> str:
    """A caption string (empty allowed, missing not)."""
    if value is None:
        raise ValueError(f"{name} is missing")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    return value


def check_image_list(items: Sequence[Any], name: str) -> None:
    """A ranked list's images: a list of at least 2 stored images."""
    if not isinstance(items, (list, tuple)) or len(items) < 2:
        what = f"{len(items)} item(s)" if isinstance(items, (list, tuple)) else type(items).__name__
        raise ValueError(f"{name} must be a list of at least 2 images, got {what}")
