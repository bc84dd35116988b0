"""Video samples during training: clips written as mp4 (GIF without ffmpeg) and shown in grids as
frame strips (evenly spaced frames side by side) instead of a single frame."""
from __future__ import annotations

import os

import numpy as np

from diffalign.utils.video import DEFAULT_FPS, frame_strip, write_video

STRIP_FRAMES = 8


def video_tiles(clips, folder: str | None = None, fps: int = DEFAULT_FPS, max_frames: int = STRIP_FRAMES) -> list[np.ndarray]:
    """One frame strip (uint8 [H, K*W, 3]) per clip of ``clips`` ([B, F, 3, H, W] tensor in [0, 1],
    [B, F, H, W, 3] array, or a list of clips); with ``folder``, each clip is also written there as
    ``<index>.mp4``."""
    tiles = []
    for k in range(len(clips)):
        clip = clips[k]
        if hasattr(clip, "detach"):
            clip = clip.detach().float().cpu()
        if folder is not None:
            write_video(os.path.join(folder, f"{k:03d}.mp4"), clip, fps=fps)
        tiles.append(frame_strip(clip, max_frames=max_frames))
    return tiles
