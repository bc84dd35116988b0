"""bench/video_failures.py: the per-frame outcome of a clause and the shares it tallies."""
from __future__ import annotations

import os
import sys
from collections import namedtuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import video_failures  # noqa: E402

sys.path.pop(0)

Det = namedtuple("Det", "label color")
RED_SQUARE = {"class": "square", "color": "red"}


def test_frame_outcome_in_the_documented_order():
    outcome = video_failures.frame_outcome
    assert outcome([Det("square", "red"), Det("circle", "blue")], RED_SQUARE) == "ok"
    assert outcome([Det("square", "red")] * 2, RED_SQUARE) == "too many"
    assert outcome([Det("square", "red")], {"class": "square", "count": 3}) == "too few"
    assert outcome([Det("square", "blue")], RED_SQUARE) == "wrong colour"
    assert outcome([Det("circle", "red")], RED_SQUARE) == "other class only"
    assert outcome([], RED_SQUARE) == "nothing detected"
    assert outcome([Det("triangle", "green")] * 2, {"class": "triangle", "count": 2}) == "ok"  # no colour asked


def test_tally_shares_per_class_and_what_was_found_instead():
    frames = {"a": [Det("circle", "red")], "b": [Det("square", "red")], "c": []}
    clips = [([np.array("a"), np.array("b")], {"include": [RED_SQUARE]}),
             ([np.array("a"), np.array("c")], {"include": [{"class": "circle"}]})]
    out = video_failures.tally(clips, lambda f: frames[str(f)])
    assert out["clause_frames"] == 4
    assert out["outcomes"] == {"ok": 0.5, "other class only": 0.25, "nothing detected": 0.25}
    assert out["per_class"]["square"] == {"clause_frames": 2, "ok": 0.5, "other class only": 0.5}
    assert out["per_class"]["circle"] == {"clause_frames": 2, "ok": 0.5, "nothing detected": 0.5}
    assert out["detected_instead"] == {"square": {"circle": 1}}


def test_swap_test_compares_same_noise_clips_and_tallies_the_best_detection():
    assert video_failures.mean_pairwise_difference([np.zeros((2, 2)), np.ones((2, 2)), np.full((2, 2), 0.5)]) \
        == (1.0 + 0.5 + 0.5) / 3
    calls = []

    def sample(prompts, seed):  # shape prompts: clips that differ by 0.1 per shape; colour prompts: by 0.3
        calls.append((tuple(prompts), seed))
        step = 0.1 if "square moving left" not in prompts[0] or "red square" not in prompts[0] else 0.3
        return np.stack([np.full((2, 4, 4, 3), step * i) for i in range(len(prompts))])

    out = video_failures.swap_test(sample, lambda frame: [Det("circle", "red")], seeds=1)
    assert calls[0] == (("a video of a red circle moving left", "a video of a red square moving left",
                         "a video of a red triangle moving left", "a video of a red diamond moving left"), 0)
    assert calls[-1][0][1] == "a video of a blue square moving left" and len(calls) == 5
    # pairwise mean of |i - j| * step over 4 clips = step * 10 / 6
    assert out["shape_word_difference"] == round(0.1 * 10 / 6, 4)
    assert out["colour_word_difference"] == round(0.3 * 10 / 6, 4)
    assert out["detected_per_asked_shape"]["triangle"] == {"circle": 8}  # 4 pairs x 2 frames


def test_swap_test_embedding_distances():
    def sample(prompts, seed):
        return np.zeros((len(prompts), 1, 2, 2, 3))

    def encode(prompts):  # shape prompts 1 apart along one axis, colour prompts 2 apart
        scale = 2.0 if prompts[0] == "a video of a red square moving left" else 1.0
        return np.array([[scale * i, 0.0] for i in range(len(prompts))])

    out = video_failures.swap_test(sample, lambda frame: [], seeds=1, encode=encode)
    assert out["shape_word_embedding_distance"] == round(10 / 6, 3)
    assert out["colour_word_embedding_distance"] == round(2 * 10 / 6, 3)
    assert out["detected_per_asked_shape"]["circle"] == {"none": 4}
