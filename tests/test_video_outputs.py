"""Video outputs of the commands: `diffalign sample` on a video pipeline writes mp4s and a strip grid."""
import json

import numpy as np
import pytest
from PIL import Image

from diffalign.cli import main
from diffalign.pipelines.generation import is_video_pipeline
from diffalign.utils.video import read_video


@pytest.fixture(scope="module")
def tiny_cogvideox_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cogvideox")
    from diffalign.pipelines.tiny import build_tiny_pipeline

    build_tiny_pipeline("cogvideox", seed=0).save_pretrained(str(root))
    return str(root)


def test_is_video_pipeline():
    assert is_video_pipeline(lambda prompt, num_frames=9, generator=None: None)
    assert not is_video_pipeline(lambda prompt, generator=None: None)


@pytest.mark.slow
def test_sample_command_writes_mp4s_for_video_pipelines(tiny_cogvideox_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["sample", "--pipeline", tiny_cogvideox_folder, "--prompt", "a red circle moving left",
                 "--prompt", "a blue square", "--out", str(out), "--steps", "2", "--num-frames", "9",
                 "--height", "16", "--width", "16", "--device", "cpu"]) == 0
    records = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert [r["file"] for r in records] == ["00000_00.mp4", "00001_00.mp4"]
    assert records[0]["num_frames"] == 9
    clips = [read_video(out / r["file"]) for r in records]
    assert all(c.shape == (9, 16, 16, 3) for c in clips)
    # the mp4 holds what the pipeline itself returns for that prompt and seed
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_cogvideox_folder)
    assert is_video_pipeline(pipe)

    def clip(seed):
        frames = pipe(prompt=["a red circle moving left"], generator=[torch.Generator("cpu").manual_seed(seed)],
                      num_frames=9, height=16, width=16, num_inference_steps=2, output_type="np").frames[0]
        return np.round(np.asarray(frames, dtype=np.float64) * 255.0)

    expected, other = clip(0), clip(1)
    # per-frame mean colours survive H.264 closely; the pixel error is well below another seed's
    np.testing.assert_allclose(clips[0].mean((1, 2)), expected.mean((1, 2)), atol=2.0)
    assert np.abs(clips[0] - expected).mean() < 0.7 * np.abs(clips[0] - other).mean()
    grid = Image.open(out / "grid.png")
    assert grid.width >= 8 * 16 * 2  # two tiles of eight-frame strips side by side
