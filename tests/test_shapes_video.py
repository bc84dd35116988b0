"""The moving-shapes world: prompts and splits, the exact renderer, and the temporal judge."""
import numpy as np
import pytest

from diffalign.shapes import VIDEO_CATEGORIES, judge_video, render_video, video_prompts
from diffalign.shapes.video import all_video_rows, render_frames, video_scene_for_row


def _row(prompt):
    return next(r for tag in VIDEO_CATEGORIES for r in all_video_rows(tag) if r["prompt"] == prompt)


def test_splits_are_disjoint_and_cover_every_category():
    train, test = video_prompts("train"), video_prompts("test")
    assert {r["tag"] for r in train} == {r["tag"] for r in test} == set(VIDEO_CATEGORIES)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    for tag in VIDEO_CATEGORIES:
        n_all = len(all_video_rows(tag))
        n_test = sum(r["tag"] == tag for r in test)
        assert n_test + sum(r["tag"] == tag for r in train) == n_all
        assert n_test == round(0.2 * n_all)
    assert len(all_video_rows("motion")) == 4 * 10 * 5
    with pytest.raises(ValueError, match="unknown split"):
        video_prompts("val")


def test_render_video_shape_dtype_and_seed():
    row = _row("a video of a red circle moving left")
    a = render_video(row, num_frames=9, size=32, seed=3)
    assert a.shape == (9, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_video(row, num_frames=9, size=32, seed=3))
    assert not np.array_equal(a, render_video(row, num_frames=9, size=32, seed=4))
    # the red circle's centroid moves left at constant speed
    red = (a[..., 0] > 180) & (a[..., 1] < 80)
    xs = np.array([np.nonzero(m)[1].mean() for m in red])
    steps = np.diff(xs)
    assert (steps < 0).all() and np.ptp(steps) < 0.5


def test_scene_paths_follow_the_row():
    scene = video_scene_for_row(_row("a video of a red circle passing a blue square from left to right"), 0)
    square, circle = scene.tracks
    assert (square.shape, square.color, square.start) == ("square", "blue", square.end)  # the square stays put
    assert circle.start[0] < square.start[0] - 0.1 and circle.end[0] > square.end[0] + 0.1
    assert circle.start[1] == circle.end[1]


@pytest.mark.parametrize("tag", VIDEO_CATEGORIES)
def test_judge_accepts_ground_truth_clips(tag):
    rows = all_video_rows(tag)
    for seed in (0, 1):
        row = rows[(seed * 37 + 5) % len(rows)]
        result = judge_video(render_video(row, seed=seed), row)
        assert result["correct"], (row["prompt"], result["reason"])
        assert result["score"] == 1.0 and result["segments"] == [1.0, 1.0, 1.0]
        assert result["segment_frames"] == [[0, 2], [3, 5], [6, 8]]
        t = result["temporal"]
        assert t["background_flicker"] == 0.0 and t["identity_consistency"] == 1.0 and t["count_stability"] == 1.0
        assert t["trajectory_residual"] < 0.01


@pytest.mark.parametrize("prompt", [
    "a video of a red circle moving left",
    "a video of a circle moving up and a square standing still",
    "a video of three squares moving right",
    "a video of a red circle passing a blue square from left to right",
])
def test_judge_rejects_reversed_motion(prompt):
    row = _row(prompt)
    frames = render_video(row, seed=2)
    assert judge_video(frames, row)["correct"]
    reversed_result = judge_video(frames[::-1], row)
    assert not reversed_result["correct"] and reversed_result["score"] < 1.0
    assert "does not" in reversed_result["reason"]


@pytest.mark.parametrize("prompt", [
    "a video of a red circle moving down",
    "a video of a green triangle and a blue square that keep their colours and shapes",
])
def test_judge_rejects_shuffled_frames(prompt):
    row = _row(prompt)
    scene = video_scene_for_row(row, 1)
    frames = render_frames(scene)
    assert any(t.start != t.end for t in scene.tracks)
    shuffled = np.concatenate([frames[::2], frames[1::2]])  # 0 2 4 6 8 1 3 5 7
    result = judge_video(shuffled, row)
    assert not result["correct"] and "straight line" in result["reason"]
    # every segment after the first sees the jump back
    assert result["segments"][0] == 1.0 and min(result["segments"][1:]) < 1.0


def test_judge_rejects_a_mid_clip_colour_change():
    row = _row("a video of a green triangle and a blue square that keep their colours and shapes")
    scene = video_scene_for_row(row, 0)
    frames = render_frames(scene)
    morphed = frames.copy()
    morphed[5:] = render_frames(scene.recolored(0, "yellow"))[5:]
    result = judge_video(morphed, row)
    assert not result["correct"]
    assert result["checks"]["present[0]"] == pytest.approx(5 / 9) and result["checks"]["present[1]"] == 1.0
    assert result["segments"][0] == 1.0 and result["segments"][2] < 1.0
    assert result["temporal"]["identity_consistency"] < 1.0
    # an unnamed colour must stay constant too
    row2 = _row("a video of a circle moving up and a square standing still")
    scene2 = video_scene_for_row(row2, 0)
    other = "red" if scene2.tracks[0].color != "red" else "blue"
    morphed2 = render_frames(scene2)
    morphed2[4:] = render_frames(scene2.recolored(0, other))[4:]
    assert not judge_video(morphed2, row2)["correct"]


def test_judge_rejects_a_wrong_count_in_one_frame_and_static_clips():
    row = _row("a video of three squares moving right")
    frames = render_video(row, seed=0)
    frames[4] = 128  # empty grey frame: the count drops to 0
    result = judge_video(frames, row)
    assert result["checks"]["present[0]"] == pytest.approx(8 / 9) and not result["correct"]
    still = judge_video(np.repeat(frames[:1], 9, axis=0), row)
    assert still["reason"] == "square: does not move right"
    assert still["temporal"]["motion"] == pytest.approx(0.0, abs=1e-9)


def test_judge_takes_float_tensors_and_checks_inputs():
    import torch

    row = _row("a video of a red circle moving left")
    frames = render_video(row, seed=0)
    as_tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    assert judge_video(as_tensor, row)["correct"]
    with pytest.raises(ValueError, match="at least 2 frames"):
        judge_video(frames[:1], row)


@pytest.mark.slow
def test_judge_is_exact_on_many_ground_truth_clips():
    for size, num_frames, per_tag in ((48, 9, 25), (32, 9, 6), (48, 13, 6)):
        for tag in VIDEO_CATEGORIES:
            rows = all_video_rows(tag)
            rng = np.random.default_rng(size)
            for seed in range(per_tag):
                row = rows[int(rng.integers(len(rows)))]
                result = judge_video(render_video(row, num_frames=num_frames, size=size, seed=seed), row)
                assert result["correct"] and min(result["segments"]) == 1.0, (size, seed, row["prompt"], result["reason"])


def test_judge_tolerates_mild_blur_and_noise():
    from diffalign.shapes import perturb

    for prompt, seed in (("a video of a white diamond and a blue square that keep their colours and shapes", 0),
                         ("a video of a yellow diamond passing a red square from top to bottom", 1)):
        row = _row(prompt)
        clip = render_video(row, seed=seed)
        blurred = np.stack([perturb(f, rng=seed * 100 + t, blur=0.8, noise=0.03) for t, f in enumerate(clip)])
        assert np.abs(blurred.astype(int) - clip.astype(int)).mean() > 2.0
        result = judge_video(blurred, row)
        assert result["correct"], (prompt, result["reason"])
        assert 0.0 < result["temporal"]["background_flicker"] < 0.05
