"""Canonical clip layouts (diffalign/shapes/video/layouts.py): every scene satisfies its row, and the
layout of a prompt is fixed up to a small jitter."""
import numpy as np
import pytest

from diffalign.shapes.video import VIDEO_CATEGORIES, judge_video, render_frames, video_prompts
from diffalign.shapes.video.layouts import canonical_video_scene_for_row


def _rows_per_category(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for tag in VIDEO_CATEGORIES:
        pool = video_prompts("train", [tag]) + video_prompts("test", [tag])
        rows.extend(pool[i] for i in rng.choice(len(pool), n, replace=False))
    return rows


@pytest.mark.parametrize("size", [32, 48])
def test_every_canonical_clip_is_judged_correct(size):
    rows = _rows_per_category(8, seed=size)
    # every group prompt too: groups of 3-4 diamonds are the tightest fit at 32 px
    rows += [r for r in video_prompts("train", ["constant_count"]) if r["include"][0]["class"] == "diamond"]
    for k, row in enumerate(rows):
        verdict = judge_video(render_frames(canonical_video_scene_for_row(row, k), 9, size), row)
        assert verdict["correct"], (row["prompt"], verdict)
        assert verdict["segments"] == [1.0, 1.0, 1.0]


def test_layout_is_fixed_by_the_prompt_up_to_jitter():
    row = next(r for r in video_prompts("train", ["motion"]) if r["include"][0]["motion"] == "left")
    scene = canonical_video_scene_for_row(row, 0, jitter=0.0)
    (track,) = scene.tracks
    assert track.start[0] > 0.5 > track.end[0] and track.start[1] == track.end[1] == 0.5
    assert track.start[0] - track.end[0] == pytest.approx(0.4)
    jittered = [canonical_video_scene_for_row(row, s).tracks[0] for s in range(20)]
    assert max(abs(t.start[0] - track.start[0]) for t in jittered) <= 0.04 + 1e-9
    # passing: the still object and the passer's line sit on opposite sides of the centre line
    row = next(r for r in video_prompts("train", ["passing"]) if r["include"][1]["passes"][0] == "left to right")
    still, passer = canonical_video_scene_for_row(row, 0, jitter=0.0).tracks
    assert still.start == still.end and still.start[1] > 0.5 > passer.start[1]
    assert passer.start[0] < still.start[0] < passer.end[0]


def test_unsupported_rows_fail_with_the_prompt():
    with pytest.raises(ValueError, match="five circles"):
        canonical_video_scene_for_row({"prompt": "five circles", "include": [{"class": "circle", "count": 5}]})
    with pytest.raises(ValueError, match="sideways"):
        canonical_video_scene_for_row({"prompt": "p", "include": [{"class": "circle", "count": 1, "motion": "sideways"}]})
