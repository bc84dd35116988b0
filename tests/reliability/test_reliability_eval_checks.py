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


@pytest.fixture
def no_pipeline(monkeypatch):
    """Fails the test if a job loads its pipeline (the expensive part) before its checks."""
    import diffalign.pipelines.generation as generation

    def no_generation(*args, **kwargs):
        raise AssertionError("the pipeline was loaded before the job's checks")

    monkeypatch.setattr(generation, "load_pipeline_spec", no_generation)


@pytest.fixture
def shapes_metadata(tmp_path):
    from diffalign import shapes

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(shapes.all_rows(tag)[0]) + "\n" for tag in shapes.CATEGORIES))
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_eval_compare_missing_lora_or_reward_weights_stop_before_generating(shapes_metadata, tmp_path, capsys, no_pipeline):
    out = tmp_path / "cmp"
    code = main(["eval", "compare", "--a", f"shapes-sd+{tmp_path / 'no-lora'}", "--b", "shapes-sd", "--prompts",
                 str(shapes_metadata), "--reward", "shapes", "--out", str(out)])
    assert code == 1 and _one_line_error(capsys).startswith(f"diffalign eval: error: --a {tmp_path / 'no-lora'}: not found")
    code = main(["eval", "compare", "--a", "shapes-sd", "--b", "shapes-sd", "--prompts", str(shapes_metadata),
                 "--reward", "shapes", f"pickscore:model={tmp_path / 'no-clip'}", "--out", str(out)])
    assert code == 1
    assert _one_line_error(capsys).startswith(f"diffalign eval: error: pickscore: the model folder {tmp_path / 'no-clip'} does not exist")
    assert not (out / "a").exists() and not (out / "results.jsonl").exists()


def test_eval_geneval_and_video_check_lora_and_output_first(shapes_metadata, tmp_path, capsys, no_pipeline):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["eval", "geneval", "--pipeline", "shapes-sd", "--metadata", str(shapes_metadata), "--out", str(blocker / "o")])
    assert code == 1 and _one_line_error(capsys).startswith(f"diffalign eval: error: --out {blocker / 'o'}: cannot write there")
    for job in (["geneval", "--metadata", str(shapes_metadata)], ["video", "--limit", "1"]):
        code = main(["eval", *job, "--pipeline", "shapes-sd", "--lora", str(tmp_path / "no-lora"), "--out", str(tmp_path / "o")])
        assert code == 1
        assert _one_line_error(capsys).startswith(f"diffalign eval: error: --lora {tmp_path / 'no-lora'}: not found")


@pytest.mark.slow  # (imports open_clip: seconds)
def test_eval_geneval_builds_its_colour_classifier_before_generating(shapes_metadata, tmp_path, capsys, no_pipeline):
    """Rows with colour clauses and ``--color-classifier clip``: missing CLIP weights stop the job first."""
    code = main(["eval", "geneval", "--pipeline", "shapes-sd", "--metadata", str(shapes_metadata), "--out", str(tmp_path / "o"),
                 "--color-classifier", "clip", "--clip-model", "ViT-B-32", "--clip-pretrained", str(tmp_path / "no-clip.pt")])
    assert code == 1
    err = _one_line_error(capsys)
    assert err.startswith("diffalign eval: error:") and "no-clip.pt" in err
    assert not any((tmp_path / "o").glob("0000*"))
