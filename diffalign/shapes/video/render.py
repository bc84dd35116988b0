"""Moving-shapes clips: straight paths at constant speed, rendered exactly frame by frame.

A :class:`VideoScene` is a tuple of :class:`Track` (a shape, its colour and size, and its start and
end centres); frame ``i`` of ``T`` shows every track at ``start + (end - start) * i / (T - 1)``,
drawn by the image world's anti-aliased renderer. :func:`video_scene_for_row` samples a scene that
satisfies a row of :mod:`diffalign.shapes.video.prompts` exactly, with boxes that stay inside the
image and apart from each other at every moment of the clip.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np

from diffalign.shapes.render import render_scene
from diffalign.shapes.scene import Scene, ShapeObject, _as_rng, _boxes_apart, include_clauses
from diffalign.shapes.video.prompts import MOTIONS, PASS_DIRECTIONS
from diffalign.shapes.vocab import COLOR_NAMES

DEFAULT_FRAMES = 9
DEFAULT_SIZE = 48
EDGE_PAD = 0.03
MIN_GAP = 0.1
"""Minimum gap between two boxes at every moment (fraction of the image; 5 px at 48 px)."""
SIZE_RANGE_FEW = (0.24, 0.3)
SIZE_RANGE_MANY = (0.23, 0.26)
TRAVEL_RANGE = (0.28, 0.42)
"""Distance a moving object covers over the clip (fraction of the image side)."""
TRAVEL_RANGE_MANY = (0.2, 0.28)
"""Travel of a group of 3 or more objects (they move together and need room)."""
PASS_TRAVEL_RANGE = (0.5, 0.68)
PASS_MARGIN = 0.12
"""A passing object starts and ends at least this far (centre to centre, along the pass) from the other."""
_CHECK_TIMES = np.linspace(0.0, 1.0, 33)
_MAX_TRIES = 2000


@dataclass(frozen=True)
class Track:
    """One object moving from centre ``start`` to ``end`` (fractions of the image, y down)."""

    shape: str
    color: str
    size: float
    start: tuple[float, float]
    end: tuple[float, float]

    def at(self, s: float) -> ShapeObject:
        """The object at clip time ``s`` in [0, 1]."""
        cx = self.start[0] + (self.end[0] - self.start[0]) * s
        cy = self.start[1] + (self.end[1] - self.start[1]) * s
        return ShapeObject(self.shape, self.color, cx, cy, self.size)


@dataclass(frozen=True)
class VideoScene:
    tracks: tuple[Track, ...]

    def at(self, s: float) -> Scene:
        return Scene(tuple(t.at(s) for t in self.tracks))

    def recolored(self, index: int, color: str) -> "VideoScene":
        """The same scene with track ``index`` in another colour (for morphing tests)."""
        tracks = list(self.tracks)
        tracks[index] = replace(tracks[index], color=color)
        return VideoScene(tuple(tracks))


def frame_times(num_frames: int) -> np.ndarray:
    if num_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {num_frames}")
    return np.linspace(0.0, 1.0, num_frames)


def render_frames(scene: VideoScene, num_frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE) -> np.ndarray:
    """uint8 array [num_frames, size, size, 3] of ``scene``."""
    return np.stack([render_scene(scene.at(float(s)), size=size) for s in frame_times(num_frames)])


def _path(rng, motion: str, half: float, travel_range) -> tuple[tuple[float, float], tuple[float, float]] | None:
    ux, uy = MOTIONS[motion]
    travel = float(rng.uniform(*travel_range)) if motion != "static" else 0.0
    dx, dy = ux * travel, uy * travel
    lo, hi = EDGE_PAD + half, 1 - EDGE_PAD - half
    xs = (lo - min(dx, 0.0), hi - max(dx, 0.0))
    ys = (lo - min(dy, 0.0), hi - max(dy, 0.0))
    if xs[0] > xs[1] or ys[0] > ys[1]:
        return None
    x0, y0 = float(rng.uniform(*xs)), float(rng.uniform(*ys))
    return (x0, y0), (x0 + dx, y0 + dy)


def _apart_always(track: Track, others: list[Track]) -> bool:
    for s in _CHECK_TIMES:
        box = track.at(float(s)).box
        if not all(_boxes_apart(box, o.at(float(s)).box, MIN_GAP) for o in others):
            return False
    return True


def _passes(track: Track, other: Track, direction: str) -> bool:
    axis = 0 if direction in ("left to right", "right to left") else 1
    sign = 1.0 if direction in ("left to right", "top to bottom") else -1.0
    before = sign * (track.start[axis] - other.start[axis])
    after = sign * (track.end[axis] - other.end[axis])
    return before <= -PASS_MARGIN and after >= PASS_MARGIN


def video_scene_for_row(row: Mapping, rng: np.random.Generator | int | None = None) -> VideoScene:
    """A random :class:`VideoScene` that satisfies ``row`` exactly (see the module docstring).

    Clauses without ``motion`` or ``passes`` get a random motion (static included); clauses without
    ``color`` get a random colour, one for all the clause's objects."""
    rng = _as_rng(rng)
    clauses = include_clauses(row)
    specs = []
    for ci, clause in enumerate(clauses):
        passes = clause.get("passes")
        if passes is not None and passes[0] not in PASS_DIRECTIONS:
            raise ValueError(f"include clause {ci} passes {passes[0]!r}; expected one of {', '.join(PASS_DIRECTIONS)}")
        if clause.get("motion") is not None and clause["motion"] not in MOTIONS:
            raise ValueError(f"include clause {ci} has motion {clause['motion']!r}; expected one of {', '.join(MOTIONS)}")
        specs.extend((ci, clause) for _ in range(int(clause.get("count", 1))))
    lo, hi = SIZE_RANGE_FEW if len(specs) <= 2 else SIZE_RANGE_MANY
    for _ in range(_MAX_TRIES):
        placed: list[Track] = []
        first_of: dict[int, Track] = {}
        group_path: dict[int, tuple[str, float]] = {}
        group_color: dict[int, str] = {}
        for ci, clause in specs:
            passes = clause.get("passes")
            motion = clause.get("motion")
            if passes is not None:
                motion = PASS_DIRECTIONS[passes[0]]
            elif motion is None:
                motion = list(MOTIONS)[int(rng.integers(len(MOTIONS)))]
            size = float(rng.uniform(lo, hi))
            for _attempt in range(50):
                if ci in group_path:  # a group moves together: same motion and travel
                    m, travel = group_path[ci]
                    path = _path(rng, m, size / 2, (travel, travel))
                else:
                    travel_range = (PASS_TRAVEL_RANGE if passes is not None
                                    else TRAVEL_RANGE_MANY if int(clause.get("count", 1)) >= 3 else TRAVEL_RANGE)
                    path = _path(rng, motion, size / 2, travel_range)
                if path is None:
                    continue
                color = clause.get("color") or group_color.get(ci) or COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
                track = Track(clause["class"], color, size, *path)
                if not _apart_always(track, placed):
                    continue
                if passes is not None and not _passes(track, first_of.get(int(passes[1]), track), passes[0]):
                    continue
                break
            else:
                break
            placed.append(track)
            first_of.setdefault(ci, track)
            travel = float(np.hypot(track.end[0] - track.start[0], track.end[1] - track.start[1]))
            group_path.setdefault(ci, (motion, travel))
            group_color.setdefault(ci, track.color)
        else:
            return VideoScene(tuple(placed))
    raise RuntimeError(f"could not place a video scene for row {row.get('prompt', row)!r} in {_MAX_TRIES} tries")


def render_video(metadata: Mapping, num_frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE, seed: int | None = 0) -> np.ndarray:
    """A ground-truth clip for ``metadata`` (a row of :func:`~diffalign.shapes.video_prompts`):
    uint8 array [num_frames, size, size, 3]; the same seed gives the same clip."""
    return render_frames(video_scene_for_row(metadata, seed), num_frames=num_frames, size=size)
