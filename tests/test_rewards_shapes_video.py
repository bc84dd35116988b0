"""The `shapes_video` reward: the temporal judge as a reward, with per-segment scores for DenseDPO."""
import numpy as np
import pytest
import torch

from diffalign.rewards import load
from diffalign.shapes import render_video
from diffalign.shapes.video import all_video_rows, segment_preferences


def _row(prompt):
    return next(r for r in all_video_rows("motion") if r["prompt"] == prompt)


def _tensor(clip):
    return torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float() / 255.0


def test_shapes_video_reward_scores_and_segments():
    row = _row("a video of a red circle moving left")
    good = render_video(row, seed=0)
    broken = good.copy()
    broken[6:] = 128  # the circle vanishes for the last three frames
    reward = load("shapes_video")
    assert reward.modality == "video" and not reward.differentiable and reward.requires_metadata
    scores = reward(torch.stack([_tensor(good), _tensor(good[::-1]), _tensor(broken)]), None, [row] * 3)
    # reversed: present 1, straight 1, motion 0 -> 2/3; broken: present 6/9, straight 1, motion 1 -> 8/9
    assert scores.tolist() == pytest.approx([1.0, 2 / 3, 8 / 9])
    assert reward.last_reasons[0] == "ok" and "does not move left" in reward.last_reasons[1]
    assert reward.last_segments.shape == (3, 3)
    assert reward.last_segments[0].tolist() == [1.0, 1.0, 1.0]
    assert reward.last_segments[2, :2].tolist() == [1.0, 1.0] and reward.last_segments[2, 2] < 1.0
    correct = load("shapes_video", target="correct")(torch.stack([_tensor(good), _tensor(broken)]), None, [row] * 2)
    assert correct.tolist() == [1.0, 0.0]
    # channel-last uint8 arrays [B, T, H, W, 3] are accepted too
    assert load("shapes_video")(good[None], None, [row]).tolist() == [1.0]
    with pytest.raises(ValueError, match="needs metadata"):
        reward(_tensor(good)[None])
    with pytest.raises(ValueError, match="unknown shapes_video target"):
        load("shapes_video", target="best")


def test_segment_preferences_label_each_window():
    a = {"segments": [1.0, 0.5, 0.7]}
    b = {"segments": [1.0, 0.9, 0.2]}
    assert segment_preferences(a, b) == [0, -1, 1]
    assert segment_preferences(a, b, margin=0.45) == [0, 0, 1]
    with pytest.raises(ValueError, match="same num_segments"):
        segment_preferences(a, {"segments": [1.0]})
