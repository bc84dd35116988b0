"""Video samples during training: validation writes mp4s and strip grids; online sample grids show strips."""
import contextlib
import os
from types import SimpleNamespace

import numpy as np
import torch

from diffalign.train.online.base import OnlineTrainer
from diffalign.train.trainer import Trainer
from diffalign.train.video_outputs import video_tiles
from diffalign.utils.video import read_video


def _clips(b=2, f=5, h=8, w=10):
    # clip k, frame t is flat grey level (40 * k + 10 * t) / 255
    levels = (40 * torch.arange(b)[:, None] + 10 * torch.arange(f)[None]).float() / 255.0
    return levels[:, :, None, None, None].expand(b, f, 3, h, w).clone()


def test_video_tiles_write_mp4s_and_return_strips(tmp_path):
    tiles = video_tiles(_clips(), str(tmp_path), fps=4)
    assert [t.shape for t in tiles] == [(8, 50, 3), (8, 50, 3)]
    assert [int(tiles[1][0, 10 * k, 0]) for k in range(5)] == [40, 50, 60, 70, 80]
    assert sorted(os.listdir(tmp_path)) == ["000.mp4", "001.mp4"]
    back = read_video(tmp_path / "001.mp4")
    assert back.shape == (5, 8, 10, 3)
    np.testing.assert_allclose(back.mean((1, 2, 3)), [40, 50, 60, 70, 80], atol=3)


def _stub(tmp_path, adapter=None):
    saved = {}
    config = SimpleNamespace(output_dir=str(tmp_path), sample_grid_size=4,
                             validation=SimpleNamespace(prompts=["a", "b"], num_inference_steps=2, guidance_scale=1.0, seed=0))
    stub = SimpleNamespace(config=config, is_main=True, adapter=adapter,
                           evaluation_weights=contextlib.nullcontext,
                           save_grid=lambda step, folder, grid: saved.update({(step, folder): grid}))
    return stub, saved


def test_online_sample_grid_shows_frame_strips(tmp_path):
    stub, saved = _stub(tmp_path)
    OnlineTrainer.save_sample_grid(stub, 3, _clips(b=2, f=9, h=8, w=8), ["p", "q"], torch.tensor([0.5, 1.0]))
    grid = saved[(3, "samples")]
    # two tiles of eight-frame strips (scale 2, 3 px borders), side by side
    assert grid.width == 2 * (8 * 8 * 2 + 6)


def test_validation_of_a_video_family_writes_mp4s(tmp_path):
    clips = _clips(b=2, f=5).permute(0, 1, 3, 4, 2).numpy()  # diffusers' np frames [B, F, H, W, 3]
    adapter = SimpleNamespace(modality="video", denoiser=torch.nn.Linear(1, 1),
                              generate=lambda prompts, **kw: SimpleNamespace(frames=clips))
    stub, saved = _stub(tmp_path, adapter)
    Trainer.validate(stub, 7)
    folder = tmp_path / "validation" / "step-000007"
    assert sorted(os.listdir(folder)) == ["000.mp4", "001.mp4"]
    assert read_video(folder / "000.mp4").shape == (5, 8, 10, 3)
    assert (7, "validation") in saved
