"""The shipped shapes-cogvideox pipeline: plain-diffusers loading, package size, moving clips, and the
held-out temporal-judge score at the shipped settings with a fixed seed (numbers in docs/video.md).

The issue asks for a held-out mean judge score of roughly 0.25-0.65; the shipped pipeline (f=2 3D VAE, 13,075
steps of 32 clips placed anywhere, then 9,533 on canonical clip layouts; docs/video.md) measures 0.497 at its
recorded settings (16 prompts per category, mean of seeds 0-2, guidance 8, 32 T5 tokens). The test asserts that
state on 8 prompts per category (0.488 at seed 0) so that a regression shows."""
import os

import numpy as np
import pytest
import torch

import diffalign  # noqa: F401  (compat shim first)
from diffalign.shapes import pretrained_path
from diffalign.shapes.sampling import sampling_defaults

SCORE_RANGE = (0.35, 0.70)
"""The asserted range of the held-out mean judge score (8 prompts per category, seed 0, the recorded settings)."""
SIZE_BUDGET = 15 * 1024 * 1024


def _load():
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(pretrained_path("cogvideox"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_shipped_video_folder_is_fp16_safetensors_within_budget():
    from safetensors import safe_open

    path = pretrained_path("cogvideox")
    files = [os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
    weights = [f for f in files if f.endswith(".safetensors")]
    assert len(weights) == 3  # transformer, vae, text_encoder
    for file in weights:
        with safe_open(file, "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}, file
    assert not [f for f in files if f.endswith((".bin", ".pt", ".ckpt"))]
    assert sum(os.path.getsize(f) for f in files) <= SIZE_BUDGET
    assert sampling_defaults(path) == {"num_inference_steps": 20, "guidance_scale": 8.0, "height": 32, "width": 32,
                                       "num_frames": 9, "max_sequence_length": 32}


@pytest.mark.slow
def test_shapes_cogvideox_loads_with_plain_diffusers_and_makes_moving_clips():
    from diffalign.shapes.video import judge_video, video_prompts

    pipe = _load()
    assert type(pipe).__name__ == "CogVideoXPipeline" and type(pipe.vae).__name__ == "AutoencoderKLCogVideoX"
    rows = [r for r in video_prompts("test", ["motion"]) if r["include"][0]["motion"] != "static"][:4]
    frames = pipe([r["prompt"] for r in rows], num_frames=9, num_inference_steps=20, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(0), output_type="np").frames
    frames = np.asarray(frames)
    assert frames.shape == (4, 9, 32, 32, 3) and np.isfinite(frames).all()
    clips = np.clip(np.round(frames * 255), 0, 255).astype(np.uint8)
    travel = [judge_video(c, r)["temporal"]["motion"] for c, r in zip(clips, rows)]
    assert np.mean(travel) > 0.1, travel  # objects travel (in units of the side), not a still image
    assert all(np.abs(c[0].astype(int) - c[-1].astype(int)).mean() > 1.0 for c in clips)


@pytest.mark.slow
def test_shapes_cogvideox_held_out_judge_score_in_stated_range():
    from diffalign.shapes.pretraining.evaluate import evaluate_video_pipeline

    settings = sampling_defaults(pretrained_path("cogvideox"))
    summary = evaluate_video_pipeline(_load(), per_category=8, seed=0, num_inference_steps=settings["num_inference_steps"],
                                      guidance_scale=settings["guidance_scale"],
                                      max_sequence_length=settings["max_sequence_length"])
    lo, hi = SCORE_RANGE
    assert lo <= summary["score"] <= hi, summary
