"""The bad-data matrix for video pairs (DenseDPO's ``video_pairs`` on the tiny CogVideoX): a corrupt,
truncated or missing mp4, frames of different sizes, videos with different frame counts and bad
segment labels stop the run during set-up with one line naming the file, row and column; the
previous run in the output folder keeps every file byte for byte."""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import snapshot

from diffalign.cli import one_line
from diffalign.data.errors import DatasetError
from diffalign.data.config import DataConfig
from diffalign.train.offline import CacheConfig, OfflineConfig, OfflinePreferenceTrainer

FRAMES, SIZE = 9, 16


@pytest.fixture(scope="module")
def video_pairs(tmp_path_factory):
    """Four DenseDPO pairs: mp4 files, one frame folder, segment labels."""
    from diffalign.utils.video import has_ffmpeg, write_video

    if not has_ffmpeg():
        pytest.skip("imageio-ffmpeg is not installed (it is a default dependency)")
    root = tmp_path_factory.mktemp("video-pairs")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        for v in (0, 1):
            write_video(root / f"v{i}_{v}.mp4", rng.integers(0, 255, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8))
        rows.append({"caption": f"video {i}", "video_0": f"v{i}_0.mp4", "video_1": f"v{i}_1.mp4", "segment_labels": [1, -1, 0]})
    (root / "frames").mkdir()
    for k in range(FRAMES):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "frames" / f"{k:02d}.png")
    rows[3]["video_1"] = "frames"
    with open(root / "pairs.jsonl", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    return root


def corrupt_video(d, rows):
    (d / rows[1]["video_1"]).write_bytes(b"\x00\x00\x00 this is not an mp4")


def truncated_video(d, rows):
    path = d / rows[2]["video_0"]
    path.write_bytes(path.read_bytes()[:200])


def missing_video(d, rows):
    os.remove(d / rows[0]["video_1"])


def frame_of_another_size(d, rows):
    Image.new("RGB", (SIZE + 4, SIZE)).save(d / "frames" / "04.png")


def fewer_frames(d, rows):
    from diffalign.utils.video import read_video, write_video

    write_video(d / "short.mp4", read_video(d / rows[2]["video_1"])[:5])
    rows[2]["video_1"] = "short.mp4"


def set_labels(row, labels):
    def mutate(d, rows):
        rows[row]["segment_labels"] = labels
    return mutate


# case -> (mutation, what the one line must say)
BAD_VIDEO_DATA = {
    "corrupt mp4": (corrupt_video, r"pairs.jsonl row 1 \(line 2\) column video_1: cannot decode video.*v1_1\.mp4"),
    "truncated mp4": (truncated_video, r"pairs.jsonl row 2 \(line 3\) column video_0: cannot decode video.*v2_0\.mp4"),
    "missing mp4": (missing_video, r"pairs.jsonl row 0 \(line 1\) column video_1: video file not found: .*v0_1\.mp4"),
    "frames of different sizes": (frame_of_another_size, r"pairs.jsonl row 3 \(line 4\) column video_1: video.* frames differ in size"),
    "different frame counts": (fewer_frames, r"pairs.jsonl row 2 \(line 3\): video_0 has shape \(9, .*but video_1 has \(5, .*same frame count"),
    "segment label out of range": (set_labels(1, [1, 2, 0]), r"pairs.jsonl row 1 \(line 2\) column segment_labels: .*must be \+1, -1 or 0"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_VIDEO_DATA))
def test_bad_video_data_stops_in_set_up_and_changes_nothing(video_pairs, tmp_path, case):
    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.tiny import build_tiny_pipeline

    mutate, expected = BAD_VIDEO_DATA[case]
    data = tmp_path / "data"
    shutil.copytree(video_pairs, data)
    rows = [json.loads(line) for line in open(data / "pairs.jsonl")]
    mutate(data, rows)
    (data / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    (out / "checkpoints" / "step-000002").mkdir(parents=True)
    (out / "checkpoints" / "step-000002" / "state.json").write_text('{"step": 2}')
    (out / "pytorch_lora_weights.safetensors").write_bytes(b"the previous run's LoRA")
    before, data_before = snapshot(out), snapshot(data)
    cfg = OfflineConfig(output_dir=str(out), method="dense_dpo", max_steps=2, batch_size=2, progress_bar=False, num_threads=1,
                        overwrite=True, data=DataConfig(path=str(data / "pairs.jsonl"), kind="video_pairs", resolution=SIZE),
                        cache=CacheConfig(dir=str(tmp_path / "cache")))
    cfg.lora.rank = 4
    with pytest.raises(DatasetError) as err:
        OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("cogvideox"))).train()
    line = one_line(err.value)
    assert "\n" not in line and re.search(expected, line), line
    assert snapshot(out) == before and snapshot(data) == data_before
