"""Canonical layouts (the pretraining scene sampler): every scene satisfies its row, slots follow
the row's order, and bad rows fail with a message naming the prompt."""
import numpy as np
import pytest

import diffalign  # noqa: F401
from diffalign.shapes.judge import judge_batch, summarize
from diffalign.shapes.layouts import canonical_scene_for_row
from diffalign.shapes.prompts import sample_rows
from diffalign.shapes.render import render_scene
from diffalign.shapes.scene import scene_detections


@pytest.mark.slow
def test_every_canonical_render_is_judged_correct():
    rows = sample_rows(240, seed=11, split="train")
    rng = np.random.default_rng(0)
    images = [render_scene(canonical_scene_for_row(row, rng)) for row in rows]
    summary = summarize(rows, judge_batch(images, rows))
    assert summary["overall"] == 1.0, summary


@pytest.mark.parametrize("relation, mover_first, axis", [
    ("left of", True, 0), ("right of", False, 0), ("above", True, 1), ("below", False, 1),
])
def test_position_rows_put_objects_on_the_asked_side(relation, mover_first, axis):
    row = {"tag": "position", "prompt": f"a photo of a circle {relation} a square",
           "include": [{"class": "square", "count": 1}, {"class": "circle", "count": 1, "position": [relation, 0]}]}
    scene = canonical_scene_for_row(row, 0, jitter=0.0)
    first, second = scene.objects
    assert (first.shape == "circle") == mover_first
    centre = (lambda o: (o.cx, o.cy)[axis])
    assert centre(first) == pytest.approx(0.3) and centre(second) == pytest.approx(0.7)
    assert {d.label for d in scene_detections(scene)} == {"circle", "square"}


def test_counting_rows_fill_the_slots_and_fixed_colours_are_kept():
    row = {"tag": "counting", "prompt": "a photo of four red triangles",
           "include": [{"class": "triangle", "count": 4, "color": "red"}], "exclude": [{"class": "triangle", "count": 5}]}
    scene = canonical_scene_for_row(row, 3, jitter=0.0)
    assert [(o.cx, o.cy) for o in scene.objects] == [(0.3, 0.3), (0.7, 0.3), (0.3, 0.7), (0.7, 0.7)]
    assert {o.color for o in scene.objects} == {"red"}


def test_bad_rows_name_the_problem():
    with pytest.raises(ValueError, match="not a shape"):
        canonical_scene_for_row({"prompt": "a photo of a dog", "include": [{"class": "dog", "count": 1}]})
    with pytest.raises(ValueError, match="1-4 objects"):
        canonical_scene_for_row({"prompt": "five circles", "include": [{"class": "circle", "count": 5}]})
