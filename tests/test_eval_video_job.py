"""`diffalign eval video` end to end on the moving-shapes world: a render-perfect fake pipeline scores
1.0, one that plays every clip backwards scores lower; mp4s, results, summary and an HTML report
with playable <video> elements."""
import base64
import json
import os
import re
import types

import numpy as np
import pytest

from diffalign.cli import main
from diffalign.pipelines import generation
from diffalign.shapes import render_video
from diffalign.shapes.video import all_video_rows
from diffalign.utils.video import read_video

ROWS = [r for tag in ("motion", "passing") for r in all_video_rows(tag)
        if r["prompt"] in ("a video of a red circle moving left", "a video of a blue square moving up",
                           "a video of a red circle passing a blue square from left to right")]


class RenderVideoPipeline:
    """Renders each prompt's ground-truth clip from the seed it is given (played backwards when ``reverse``)."""

    def __init__(self, rows, reverse=False):
        self.rows = {r["prompt"]: r for r in rows}
        self.reverse = reverse
        self.calls = []

    def __call__(self, prompt, generator, output_type="np", num_frames=9, **sampling):
        self.calls.append((list(prompt), [g.initial_seed() for g in generator], num_frames, sampling))
        clips = [render_video(self.rows[p], num_frames=num_frames, seed=g.initial_seed()) for p, g in zip(prompt, generator)]
        frames = np.stack([c[::-1] if self.reverse else c for c in clips]).astype(np.float32) / 255.0
        return types.SimpleNamespace(frames=frames)


def _run(tmp_path, monkeypatch, pipe, name):
    monkeypatch.setattr(generation, "load_pipeline_spec", lambda spec, device=None, dtype=None: pipe)
    meta = tmp_path / "rows.jsonl"
    meta.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = str(tmp_path / name)
    assert main(["eval", "video", "--pipeline", "fake", "--metadata", str(meta), "--out", out,
                 "--videos-per-prompt", "2", "--seed", "3", "--batch-size", "3", "--steps", "4"]) == 0
    return out, json.load(open(os.path.join(out, "summary.json")))


@pytest.mark.slow
def test_render_perfect_pipeline_scores_one(tmp_path, monkeypatch, capsys):
    pipe = RenderVideoPipeline(ROWS)
    out, summary = _run(tmp_path, monkeypatch, pipe, "perfect")
    assert [s for _, seeds, _, _ in pipe.calls for s in seeds] == [3, 4, 3, 4, 3, 4]
    assert pipe.calls[0][2] == 9 and pipe.calls[0][3] == {"num_inference_steps": 4}
    assert summary["overall"] == 1.0 and summary["score"] == 1.0 and summary["n"] == 6
    assert summary["categories"] == {"motion": {"accuracy": 1.0, "score": 1.0, "n": 4},
                                     "passing": {"accuracy": 1.0, "score": 1.0, "n": 2}}
    assert summary["temporal"]["background_flicker"] == 0.0 and summary["temporal"]["identity_consistency"] == 1.0
    results = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
    assert [r["filename"] for r in results[:2]] == ["videos/00000_00.mp4", "videos/00000_01.mp4"]
    assert all(r["segments"] == [1.0, 1.0, 1.0] for r in results)
    assert read_video(os.path.join(out, results[0]["filename"])).shape == (9, 48, 48, 3)
    page = open(os.path.join(out, "report.html")).read()
    videos = re.findall(r'<video src="data:video/mp4;base64,([^"]+)"', page)
    assert len(videos) == 6
    assert base64.b64decode(videos[0]) == open(os.path.join(out, results[0]["filename"]), "rb").read()
    assert "Temporal quality" in page and "background_flicker" in open(os.path.join(out, "report.md")).read()
    assert "Overall score (avg. over categories): 1.00000" in capsys.readouterr().out


@pytest.mark.slow
def test_reversed_pipeline_scores_lower(tmp_path, monkeypatch):
    _, summary = _run(tmp_path, monkeypatch, RenderVideoPipeline(ROWS, reverse=True), "reversed")
    assert summary["overall"] == 0.0
    # motion: present and straight but the wrong way (2/3); passing: of seven rules the circle's
    # motion and the passing rule fail (presence x2, straight x2 and the square's stillness hold: 5/7)
    assert summary["categories"]["motion"]["score"] == 2 / 3
    assert abs(summary["categories"]["passing"]["score"] - 5 / 7) < 1e-9
