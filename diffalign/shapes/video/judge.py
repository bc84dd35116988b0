"""The temporal judge of the moving-shapes world: per-frame detection, tracking, rules over time.

Each frame goes through the image world's pixel detector (:func:`diffalign.shapes.detect_shapes`,
detections below GenEval's 0.3 score dropped). For every include clause and frame, the clause's
objects are the detections of its class (and colour, when the clause names one); the frame holds
the clause when there are exactly ``count`` of them, all in one colour (the colour the clause's
object has in most frames: no morphing). The clause's trajectory is the centroid of its objects,
fitted by a straight line at constant speed (least squares over time). Rules:

- ``present``: every clause holds in every frame (shape, colour and count constant);
- ``motion``: the fitted travel over the clip points the named way (the dominant axis, at least
  :data:`MIN_TRAVEL` of the image) or, for ``static``, stays under :data:`STATIC_MAX`;
- ``straight``: no fitted trajectory strays more than :data:`MAX_RESIDUAL` from its line (shuffled
  or jittering frames fail this);
- ``passes``: the passing object starts on one side of the other and ends on the other side, by at
  least :data:`PASS_MIN` (centre to centre along the pass).

``score`` is the mean of the rule values (``present`` counts the share of frames that hold), so a
correct clip scores 1. ``segments`` scores contiguous frame windows the same way (presence in the
window, the straightness and direction of each trajectory over the window and its preceding frame),
for DenseDPO's dense labels. ``temporal`` has quality figures: ``background_flicker`` (mean absolute
frame-to-frame change of pixels outside every object, in [0, 1] units), ``trajectory_residual``
(mean RMS distance of trajectories from their lines, image fractions), ``identity_consistency``
(share of nearest-neighbour links between consecutive frames whose shape and colour stay the same),
``count_stability`` (share of consecutive frames with the same number of detections) and ``motion``
(mean travel of the clauses over the clip, image fractions).
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from diffalign.geneval.rules import THRESHOLD
from diffalign.shapes.detect import detect_shapes
from diffalign.shapes.video.prompts import MOTIONS, PASS_DIRECTIONS
from diffalign.utils.images import to_uint8

MIN_TRAVEL = 0.12
STATIC_MAX = 0.06
DOMINANCE = 0.5
"""A moving clause's travel across its axis may be at most this share of its travel along it."""
MAX_RESIDUAL = 0.04
PASS_MIN = 0.04
LINK_DISTANCE = 0.25
DEFAULT_SEGMENTS = 3


def video_frames(frames) -> list[np.ndarray]:
    """uint8 [T,H,W,3] array, float tensor/array [T,3,H,W] or [T,H,W,3] in [0, 1], or a list of
    images -> list of uint8 HxWx3 frames."""
    if hasattr(frames, "ndim") and frames.ndim == 4:
        return [to_uint8(frames[i]) for i in range(frames.shape[0])]
    return [to_uint8(f) for f in frames]


def _centres(dets, w: int, h: int) -> np.ndarray:
    return np.array([[(d.box[0] + d.box[2]) / 2 / w, (d.box[1] + d.box[3]) / 2 / h] for d in dets]).reshape(-1, 2)


def _fit(times: np.ndarray, points: np.ndarray):
    """Least-squares line through ``points`` [n, 2] at ``times``: (velocity [2], residuals [n])."""
    a = np.stack([np.ones_like(times), times], 1)
    coef, *_ = np.linalg.lstsq(a, points, rcond=None)
    return coef[1], np.linalg.norm(points - a @ coef, axis=1)


def _direction_ok(travel: np.ndarray, motion: str, min_travel: float = MIN_TRAVEL, static_max: float = STATIC_MAX) -> bool:
    ux, uy = MOTIONS[motion]
    if motion == "static":
        return float(np.hypot(*travel)) <= static_max
    along = travel[0] * ux + travel[1] * uy
    across = abs(travel[0] * uy) + abs(travel[1] * ux)
    return along >= min_travel and across <= DOMINANCE * along


def _clause_motion(clause: Mapping) -> str | None:
    if clause.get("passes") is not None:
        return PASS_DIRECTIONS[clause["passes"][0]]
    return clause.get("motion")


def _clause_frames(clause: Mapping, dets_per_frame, sizes):
    """Per frame: (holds, centroid or None, colour or None) for one clause."""
    wanted = clause.get("color")
    found = [[d for d in dets if d.label == clause["class"] and (wanted is None or d.color == wanted)]
             for dets in dets_per_frame]
    colours = Counter(d.color for f in found for d in f)
    colour = wanted or (colours.most_common(1)[0][0] if colours else None)
    out = []
    for f, (w, h) in zip(found, sizes):
        holds = len(f) == int(clause.get("count", 1)) and all(d.color == colour for d in f)
        out.append((holds, _centres(f, w, h).mean(0) if holds else None))
    return out


def _background_flicker(frames: list[np.ndarray], dets_per_frame) -> float:
    if len(frames) < 2:
        return 0.0
    h, w = frames[0].shape[:2]
    masks = []
    for dets in dets_per_frame:
        m = np.ones((h, w), dtype=bool)
        for d in dets:
            x0, y0 = max(int(np.floor(d.box[0])) - 2, 0), max(int(np.floor(d.box[1])) - 2, 0)
            m[y0:int(np.ceil(d.box[3])) + 2, x0:int(np.ceil(d.box[2])) + 2] = False
        masks.append(m)
    diffs = []
    for t in range(len(frames) - 1):
        both = masks[t] & masks[t + 1]
        if both.any():
            delta = np.abs(frames[t + 1].astype(np.float64) - frames[t].astype(np.float64)) / 255.0
            diffs.append(float(delta[both].mean()))
    return float(np.mean(diffs)) if diffs else 0.0


def _identity_links(dets_per_frame, sizes) -> tuple[float, float]:
    same, links, stable = 0, 0, 0
    for t in range(len(dets_per_frame) - 1):
        a, b = dets_per_frame[t], dets_per_frame[t + 1]
        stable += len(a) == len(b)
        if not a or not b:
            continue
        ca, cb = _centres(a, *sizes[t]), _centres(b, *sizes[t + 1])
        dist = np.linalg.norm(ca[:, None] - cb[None], axis=-1)
        for i, j in enumerate(dist.argmin(1)):
            if dist[i, j] <= LINK_DISTANCE:
                links += 1
                same += a[i].label == b[j].label and a[i].color == b[j].color
    pairs = max(len(dets_per_frame) - 1, 1)
    return (same / links if links else 1.0), stable / pairs


def _window_score(times, per_clause, clauses, window: Sequence[int], span: float) -> float:
    """Score of frames ``window`` (plus the frame before, for motion): presence share and, per
    clause with a motion, direction and straightness over the window."""
    values = [float(np.mean([all(pc[t][0] for pc in per_clause) for t in window]))]
    frames = ([window[0] - 1] if window[0] > 0 else []) + list(window)
    frac = (times[frames[-1]] - times[frames[0]]) / span if len(frames) > 1 else 0.0
    for clause, pc in zip(clauses, per_clause):
        motion = _clause_motion(clause)
        ok = [t for t in frames if pc[t][0]]
        if len(ok) < 2:
            values.append(0.0)
            continue
        velocity, resid = _fit(times[ok], np.stack([pc[t][1] for t in ok]))
        good = float(resid.max()) <= MAX_RESIDUAL
        if motion is not None:
            good = good and _direction_ok(velocity * span * frac, motion, MIN_TRAVEL * frac, STATIC_MAX)
        values.append(float(good))
    return float(np.mean(values))


def judge_video(frames, metadata: Mapping, num_segments: int = DEFAULT_SEGMENTS, threshold: float = THRESHOLD) -> dict:
    """Judge one clip against its row (see the module docstring). Returns a dict with ``correct``
    (bool), ``score`` (float in [0, 1]), ``reason`` (the first failed rule, or ``"ok"``), ``checks``
    (rule -> value), ``segments`` (``num_segments`` window scores in [0, 1]), ``segment_frames``
    ([first, last] frame of each window) and ``temporal`` (quality figures)."""
    frames = video_frames(frames)
    n = len(frames)
    if n < 2:
        raise ValueError(f"judge_video needs a clip of at least 2 frames, got {n}")
    clauses = list(metadata.get("include", []))
    if not clauses:
        raise ValueError(f"row has no include clauses: {metadata!r}")
    sizes = [(f.shape[1], f.shape[0]) for f in frames]
    dets_per_frame = [[d for d in detect_shapes(f) if d.score >= threshold] for f in frames]
    times = np.arange(n, dtype=np.float64)
    span = float(n - 1)
    per_clause = [_clause_frames(c, dets_per_frame, sizes) for c in clauses]

    checks: dict[str, float] = {}
    reasons: list[str] = []
    fits = []
    for k, (clause, pc) in enumerate(zip(clauses, per_clause)):
        name = f"{clause.get('color', '')} {clause['class']}".strip()
        share = float(np.mean([h for h, _ in pc]))
        checks[f"present[{k}]"] = share
        if share < 1.0:
            reasons.append(f"{name}: shape, colour or count wrong in {sum(not h for h, _ in pc)} of {n} frames")
        ok = [t for t in range(n) if pc[t][0]]
        if len(ok) >= 2:
            velocity, resid = _fit(times[ok], np.stack([pc[t][1] for t in ok]))
            fits.append((velocity * span, resid, np.stack([pc[t][1] for t in ok])))
        else:
            fits.append(None)
        fit = fits[-1]
        straight = fit is not None and float(fit[1].max()) <= MAX_RESIDUAL
        checks[f"straight[{k}]"] = float(straight)
        if not straight:
            reasons.append(f"{name}: trajectory is not a straight line at constant speed")
        motion = _clause_motion(clause)
        if motion is not None:
            good = fit is not None and _direction_ok(fit[0], motion)
            checks[f"motion[{k}]"] = float(good)
            if not good:
                reasons.append(f"{name}: does not move {motion}" if motion != "static" else f"{name}: is not static")
        passes = clause.get("passes")
        if passes is not None:
            other = per_clause[int(passes[1])]
            good = False
            if pc[0][0] and pc[-1][0] and other[0][0] and other[-1][0]:
                axis = 0 if passes[0] in ("left to right", "right to left") else 1
                sign = 1.0 if passes[0] in ("left to right", "top to bottom") else -1.0
                before = sign * (pc[0][1][axis] - other[0][1][axis])
                after = sign * (pc[-1][1][axis] - other[-1][1][axis])
                good = before <= -PASS_MIN and after >= PASS_MIN
            checks[f"passes[{k}]"] = float(good)
            if not good:
                reasons.append(f"{name}: does not pass from {passes[0]}")

    windows = [list(w) for w in np.array_split(np.arange(n), min(num_segments, n)) if len(w)]
    segments = [_window_score(times, per_clause, clauses, w, span) for w in windows]
    identity, stability = _identity_links(dets_per_frame, sizes)
    residuals = [float(np.sqrt(np.mean(f[1] ** 2))) for f in fits if f is not None]
    travels = [float(np.hypot(*f[0])) for f in fits if f is not None]
    temporal = {
        "background_flicker": _background_flicker(frames, dets_per_frame),
        "trajectory_residual": float(np.mean(residuals)) if residuals else 1.0,
        "identity_consistency": identity,
        "count_stability": stability,
        "motion": float(np.mean(travels)) if travels else 0.0,
    }
    correct = not reasons
    return {
        "correct": correct,
        "score": float(np.mean(list(checks.values()))),
        "reason": "ok" if correct else reasons[0],
        "checks": checks,
        "segments": segments,
        "segment_frames": [[int(w[0]), int(w[-1])] for w in windows],
        "temporal": temporal,
    }


def summarize_video(rows: Sequence[Mapping], results: Sequence[Mapping]) -> dict:
    """Per-category accuracy and mean score, ``overall`` = unweighted mean of category accuracies,
    and the mean of every temporal figure."""
    if len(rows) != len(results):
        raise ValueError(f"summarize_video got {len(rows)} rows but {len(results)} results")
    by_tag: dict[str, list[Mapping]] = {}
    for row, res in zip(rows, results):
        by_tag.setdefault(row.get("tag", "?"), []).append(res)
    categories = {tag: {"accuracy": float(np.mean([r["correct"] for r in rs])),
                        "score": float(np.mean([r["score"] for r in rs])), "n": len(rs)}
                  for tag, rs in by_tag.items()}
    keys = sorted({k for r in results for k in r.get("temporal", {})})
    return {
        "overall": float(np.mean([c["accuracy"] for c in categories.values()])) if categories else 0.0,
        "accuracy": float(np.mean([r["correct"] for r in results])) if results else 0.0,
        "score": float(np.mean([r["score"] for r in results])) if results else 0.0,
        "categories": categories,
        "temporal": {k: float(np.mean([r["temporal"][k] for r in results if k in r.get("temporal", {})])) for k in keys},
        "n": len(results),
    }


def segment_preferences(result_0: Mapping, result_1: Mapping, margin: float = 0.0) -> list[int]:
    """DenseDPO segment labels from two verdicts of :func:`judge_video` on aligned clips: +1 where
    clip 0's segment scores more than ``margin`` above clip 1's, -1 where below, 0 (tie) otherwise."""
    a, b = result_0["segments"], result_1["segments"]
    if len(a) != len(b):
        raise ValueError(f"the two clips have {len(a)} and {len(b)} segments; judge them with the same num_segments")
    return [1 if x - y > margin else -1 if y - x > margin else 0 for x, y in zip(a, b)]
