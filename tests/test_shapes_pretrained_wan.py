"""The shipped shapes-wan pipeline (Wan2.1 classes on the moving-shapes world): plain-diffusers loading, package
size, moving clips, the adapter's recorded settings, and the held-out temporal-judge score at the shipped
settings with a fixed seed (numbers in docs/video.md, "The shipped pipeline: shapes-wan")."""
import os

import numpy as np
import pytest
import torch

import diffalign  # noqa: F401  (compat shim first)
from diffalign.shapes import pretrained_path
from diffalign.shapes.sampling import sampling_defaults

SCORE_RANGE = (0.15, 0.65)
"""The asserted range of the held-out mean judge score (8 prompts per category, seed 0, the recorded settings):
measured 0.257 for the weights shipped 2026-12-07 (`wanC`, continued on canonical clip layouts; 0.122 for the
previous `wanB`; docs/video.md), a weak base; the range catches a broken pipeline or the old weights."""
SIZE_BUDGET = 15 * 1024 * 1024


def _load():
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(pretrained_path("wan"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_shipped_wan_folder_is_fp16_safetensors_within_budget():
    from safetensors import safe_open

    path = pretrained_path("wan")
    files = [os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
    weights = [f for f in files if f.endswith(".safetensors")]
    assert len(weights) == 3  # transformer, vae, text_encoder
    for file in weights:
        with safe_open(file, "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}, file
    assert not [f for f in files if f.endswith((".bin", ".pt", ".ckpt"))]
    assert sum(os.path.getsize(f) for f in files) <= SIZE_BUDGET
    settings = sampling_defaults(path)
    assert {k: settings[k] for k in ("height", "width", "num_frames", "max_sequence_length")} == {
        "height": 32, "width": 32, "num_frames": 9, "max_sequence_length": 32}


def test_wan_adapter_takes_the_recorded_clip_size_and_text_length():
    from diffalign.pipelines.models import ModelConfig, load_model

    adapter = load_model(ModelConfig(pretrained="shapes-wan"))
    assert adapter.family == "wan" and adapter.max_sequence_length == 32
    assert adapter.default_size() == (32, 32, 9) and adapter.latent_shape(32, 32, 9) == (5, 8, 16, 16)


@pytest.mark.slow
def test_shapes_wan_loads_with_plain_diffusers_and_makes_moving_clips():
    from diffalign.shapes.video import judge_video, video_prompts

    pipe = _load()
    assert type(pipe).__name__ == "WanPipeline" and type(pipe.vae).__name__ == "AutoencoderKLWan"
    rows = [r for r in video_prompts("test", ["motion"]) if r["include"][0]["motion"] != "static"][:8]
    settings = sampling_defaults(pretrained_path("wan"))
    frames = pipe([r["prompt"] for r in rows], num_frames=9, height=32, width=32, num_inference_steps=20,
                  guidance_scale=settings["guidance_scale"], max_sequence_length=32,
                  generator=torch.Generator().manual_seed(0), output_type="np").frames
    frames = np.asarray(frames)
    assert frames.shape == (8, 9, 32, 32, 3) and np.isfinite(frames).all()
    clips = np.clip(np.round(frames * 255), 0, 255).astype(np.uint8)
    travel = [judge_video(c, r)["temporal"]["motion"] for c, r in zip(clips, rows)]
    # objects travel (in units of the side), not a still image: 0.34 on these 8 with the current weights (0.21 with
    # the previous ones; a weak base whose detections drop out in some clips, so a few travel little)
    assert np.mean(travel) > 0.1 and max(travel) > 0.3, travel
    assert all(np.abs(c[0].astype(int) - c[-1].astype(int)).mean() > 1.0 for c in clips)


@pytest.mark.slow
def test_shapes_wan_held_out_judge_score_in_stated_range():
    from diffalign.shapes.pretraining.evaluate import evaluate_video_pipeline

    settings = sampling_defaults(pretrained_path("wan"))
    summary = evaluate_video_pipeline(_load(), per_category=8, seed=0, num_inference_steps=settings["num_inference_steps"],
                                      guidance_scale=settings["guidance_scale"], height=32, width=32,
                                      max_sequence_length=settings["max_sequence_length"])
    lo, hi = SCORE_RANGE
    assert lo <= summary["score"] <= hi, summary
