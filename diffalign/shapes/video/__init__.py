"""The moving-shapes world: clips of shapes moving along straight paths at constant speed, prompts
with time in five categories (:mod:`.prompts`), an exact renderer (:mod:`.render`) and a temporal
judge (:mod:`.judge`), and DenseDPO pairs made from rendered clips (:mod:`.dense_pairs`). The public names are re-exported by :mod:`diffalign.shapes`:
``video_prompts(split)``, ``render_video(metadata, num_frames=, size=, seed=)`` and
``judge_video(frames, metadata)``."""
from __future__ import annotations

from diffalign.shapes.video.dense_pairs import make_dense_pairs, make_sampled_pairs
from diffalign.shapes.video.judge import judge_video, segment_preferences, summarize_video, video_frames
from diffalign.shapes.video.prompts import (
    MOTIONS,
    PASS_DIRECTIONS,
    VIDEO_CATEGORIES,
    all_video_rows,
    sample_video_rows,
    video_prompt_split,
    video_prompts,
)
from diffalign.shapes.video.render import Track, VideoScene, render_frames, render_video, video_scene_for_row

__all__ = [
    "MOTIONS",
    "PASS_DIRECTIONS",
    "VIDEO_CATEGORIES",
    "Track",
    "VideoScene",
    "all_video_rows",
    "judge_video",
    "make_dense_pairs",
    "make_sampled_pairs",
    "render_frames",
    "render_video",
    "sample_video_rows",
    "segment_preferences",
    "summarize_video",
    "video_frames",
    "video_prompt_split",
    "video_prompts",
    "video_scene_for_row",
]
