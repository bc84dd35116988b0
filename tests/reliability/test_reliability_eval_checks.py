"""Evaluation jobs check their rewards and output folder before generating anything."""
from __future__ import annotations

import json

import pytest

from diffalign.cli import main


@pytest.fixture
def style_prompts(tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    for style in ("anime", "concept-art", "paintings", "photo"):
        (folder / f"{style}.json").write_text(json.dumps([f"a {style} cat"]))
    return folder


@pytest.mark.slow  # (imports open_clip: seconds)
def test_eval_hps_without_weights_stops_before_generating(style_prompts, tmp_path, capsys, monkeypatch):
    import diffalign.pipelines.generation as generation

    def no_generation(*args, **kwargs):
        raise AssertionError("the pipeline was loaded before the rewards were checked")

    monkeypatch.setattr(generation, "load_pipeline_spec", no_generation)
    out = tmp_path / "out"
    code = main(["eval", "hps", "--pipeline", "shapes-sd", "--prompts", str(style_prompts), "--out", str(out),
                 "--hps-path", str(tmp_path / "no-weights")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"diffalign eval: error: hpsv2.0: {tmp_path / 'no-weights'} does not exist (expected the file HPS_v2_compressed.pt)")
    assert not (out / "images").exists()


def test_eval_hps_unwritable_output_stops_first(style_prompts, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["eval", "hps", "--images", str(tmp_path), "--prompts", str(style_prompts), "--out", str(blocker / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"diffalign eval: error: --out {blocker / 'out'}: cannot write there")
