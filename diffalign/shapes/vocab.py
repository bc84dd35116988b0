"""The shapes world's vocabulary: shapes, named colours, the six GenEval categories, and phrasing.

Colours are GenEval's ten colour names with flat RGB values picked to be far apart from each other
and from the mid-grey background in CIELAB, so that a judge working from pixels alone can name
them after blur, noise and a small colour shift.
"""
from __future__ import annotations

from diffalign.geneval.vocab import COLOR_NAMES as GENEVAL_COLOR_NAMES
from diffalign.geneval.vocab import RELATIONS, TAGS  # noqa: F401 (RELATIONS re-exported)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
"""Axis-aligned shapes. Every shape's bounding box is a square of side ``size``; the triangle
points up (base at the bottom); the diamond is a square turned by 45 degrees."""

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 225, 30),
    "green": (30, 165, 55),
    "blue": (30, 110, 230),
    "purple": (140, 30, 160),
    "pink": (250, 150, 210),
    "brown": (110, 60, 20),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
"""GenEval's ten colour names (in GenEval's order) -> RGB. In CIELAB (D65, CIE76) every pair of
colours is >= 46 apart (closest: red/orange and blue/purple) and every colour is >= 43 from the
background (closest: brown and white)."""

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
if COLOR_NAMES != GENEVAL_COLOR_NAMES:
    raise AssertionError(f"shapes colours {COLOR_NAMES} must be GenEval's, in GenEval's order")

BACKGROUND: tuple[int, int, int] = (128, 128, 128)
"""Flat mid-grey background, far from every named colour."""

CATEGORIES: tuple[str, ...] = TAGS
"""GenEval's six task tags, in GenEval's order (``RELATIONS`` is GenEval's too)."""

COUNTS: tuple[int, ...] = (2, 3, 4)
"""Object counts used by counting prompts (GenEval uses 2-4)."""

NUMBER_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def with_article(word: str) -> str:
    """'a circle', 'an orange circle' (GenEval's rule: 'an' before a vowel letter)."""
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def plural(word: str) -> str:
    """'circles' (GenEval's rule: add 'es' after a final 's', otherwise 's')."""
    return f"{word}es" if word.endswith("s") else f"{word}s"
