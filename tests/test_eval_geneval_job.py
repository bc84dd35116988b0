"""The GenEval job end to end on the shapes world: GenEval's folder layout, results.jsonl, summary.json
and reports; a render-perfect "pipeline" scores 1.0, a pipeline that draws near misses scores 0 with
GenEval's reasons; --images-only; the geneval reward; the shipped shapes pipeline when present."""
import json
import os
import types

import numpy as np
import pytest
from PIL import Image

import diffalign  # noqa: F401  (compat shim first)
from diffalign import shapes
from diffalign.cli import main
from diffalign.pipelines import generation
from diffalign.eval.geneval import job, layout
from diffalign.geneval import read_metadata, write_metadata
from diffalign.geneval.detectors import Detector
from diffalign.geneval.evaluator import GenEvalEvaluator
from diffalign.shapes.negatives import near_miss_kinds, near_miss_row

ROWS = [shapes.all_rows(tag)[i] for tag in shapes.CATEGORIES for i in (0, 3)]  # two distinct prompts per tag


def miss(row, rng):
    """A row changed by its first applicable mistake: its scenes fail ``row``."""
    return near_miss_row(row, near_miss_kinds(row)[0], rng)


class RenderPipeline:
    """A diffusers-style callable that renders a scene satisfying each prompt's row (or a near miss
    of it when ``miss`` is set), seeded by the generator it is given."""

    def __init__(self, rows, miss=False):
        self.rows = {r["prompt"]: r for r in rows}
        self.miss = miss
        self.calls = []

    def __call__(self, prompt, generator, output_type="pil", **sampling):
        self.calls.append((list(prompt), [g.initial_seed() for g in generator], sampling))
        images = []
        for p, g in zip(prompt, generator):
            rng = np.random.default_rng(g.initial_seed())
            row = self.rows[p]
            if self.miss:
                row = miss(row, rng)
            images.append(Image.fromarray(shapes.render_row(row, rng)))
        return types.SimpleNamespace(images=images)


@pytest.fixture
def metadata_file(tmp_path):
    path = tmp_path / "shapes_meta.jsonl"
    write_metadata(path, ROWS)
    return str(path)


def _patch_loader(monkeypatch, pipe):
    seen = {}

    def fake_load(spec, device=None, dtype=None):
        seen["spec"] = spec
        return pipe

    monkeypatch.setattr(generation, "load_pipeline_spec", fake_load)
    return seen


def _read_results(out):
    with open(os.path.join(out, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_render_perfect_pipeline_scores_one_through_the_cli(tmp_path, metadata_file, monkeypatch, capsys):
    pipe = RenderPipeline(ROWS)
    seen = _patch_loader(monkeypatch, pipe)
    out = str(tmp_path / "run")
    lora = tmp_path / "some-lora.safetensors"
    lora.write_bytes(b"")  # the job checks that the LoRA exists before it generates
    assert main(["eval", "geneval", "--pipeline", "render-perfect", "--lora", str(lora), "--revision", "v2", "--metadata",
                 metadata_file, "--out", out, "--images-per-prompt", "2", "--seed", "5", "--batch-size", "5", "--steps", "7"]) == 0
    assert seen["spec"] == generation.PipelineSpec("render-perfect", str(lora), "v2")
    # GenEval's layout: one folder per prompt with its metadata line and numbered samples
    for i, row in enumerate(ROWS):
        with open(os.path.join(out, f"{i:05d}", "metadata.jsonl")) as f:
            assert json.loads(f.read()) == row
        assert sorted(os.listdir(os.path.join(out, f"{i:05d}", "samples"))) == ["0000.png", "0001.png"]
    # image k of every prompt from seed + k, whatever the batching; GenEval's 9.0 guidance, --steps 7
    seeds = [s for _, batch, _ in pipe.calls for s in batch]
    assert seeds == [5, 6] * len(ROWS)
    assert pipe.calls[0][2] == {"num_inference_steps": 7, "guidance_scale": 9.0}
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["overall"] == 1.0 and set(summary["per_tag"].values()) == {1.0}
    assert list(summary["per_tag"]) == list(shapes.CATEGORIES)
    assert (summary["correct_images"], summary["correct_prompts"], summary["images"], summary["prompts"]) == (1.0, 1.0, 24, 12)
    assert summary["label"] == "GenEval protocol, detector=shapes" and summary["detector"]["name"] == "shapes"
    assert summary["generation"]["images_per_prompt"] == 2 and summary["generation"]["lora"] == str(lora)
    results = _read_results(out)
    assert len(results) == 24
    first = results[0]
    assert set(first) >= {"filename", "tag", "prompt", "correct", "reason", "metadata", "details", "detections", "detector"}
    assert json.loads(first["metadata"]) == ROWS[0] and first["correct"] is True and first["reason"] == ""
    assert all(d["score"] > 0.9 and "color" in d for r in results for d in r["detections"])
    # every kept object of a single-object prompt is the prompt's class, in GenEval's details format too
    single = next(r for r in results if r["tag"] == "single_object")
    cls = json.loads(single["metadata"])["include"][0]["class"]
    assert list(json.loads(single["details"])) == [cls] and len(json.loads(single["details"])[cls][0]) == 5
    printed = capsys.readouterr().out
    assert "Overall score (avg. over tasks): 1.00000" in printed
    for name in ("report.html", "report.md"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    md = open(os.path.join(out, "report.md")).read()
    assert "| overall (mean of tags) | 1.000 |" in md and "report_files/scores_per_tag.png" in md


def test_near_misses_fail_with_reasons_and_images_only_agrees(tmp_path):
    out = str(tmp_path / "miss")
    evaluator = GenEvalEvaluator("shapes")
    summary = job.run(out, evaluator, rows=ROWS, pipe=RenderPipeline(ROWS, miss=True), images_per_prompt=1, seed=0, log=lambda m: None)
    results = _read_results(out)
    assert summary["overall"] == 0.0 and summary["correct_prompts"] == 0.0
    assert all(r["reason"] for r in results)
    reasons = "\n".join(r["reason"] for r in results)
    assert "expected" in reasons
    with pytest.raises(FileExistsError, match="already holds GenEval prompt folders"):
        job.run(out, evaluator, rows=ROWS, pipe=RenderPipeline(ROWS), log=lambda m: None)
    # the same folder judged in --images-only mode gives the same verdicts
    out2 = str(tmp_path / "again")
    assert main(["eval", "geneval", "--images-only", out, "--out", out2, "--detector", "shapes"]) == 0
    again = _read_results(out2)
    assert [(r["correct"], r["reason"]) for r in again] == [(r["correct"], r["reason"]) for r in results]
    assert json.load(open(os.path.join(out2, "summary.json")))["images_dir"] == os.path.abspath(out)


def test_mixed_folder_scores_like_genevals_summary(tmp_path):
    """Prompt 0 of each tag rendered right, prompt 1 as a near miss: every tag scores 0.5."""
    rng = np.random.default_rng(0)
    by_tag = {t: [r for r in ROWS if r["tag"] == t] for t in shapes.CATEGORIES}
    rows = [by_tag[t][i] for t in shapes.CATEGORIES for i in (0, 1)]
    images = [[Image.fromarray(shapes.render_row(r if i % 2 == 0 else miss(r, rng), rng))] for i, r in enumerate(rows)]
    root = str(tmp_path / "mixed")
    layout.write_layout(root, rows, images)
    summary = job.run(str(tmp_path / "out"), GenEvalEvaluator("shapes"), images_dir=root, log=lambda m: None)
    assert summary["per_tag"] == {t: 0.5 for t in shapes.CATEGORIES}
    assert summary["overall"] == 0.5 and summary["correct_prompts"] == 0.5


def test_layout_and_option_errors(tmp_path, metadata_file):
    bad = tmp_path / "bad"
    (bad / "00000" / "samples").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"00000: no metadata.jsonl"):
        layout.scan(str(bad))
    (bad / "00000" / "metadata.jsonl").write_text(json.dumps({"tag": "colors", "prompt": "x"}))
    with pytest.raises(ValueError, match=r"00000/metadata.jsonl: missing key 'include'"):
        layout.scan(str(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes").mkdir()  # non-digit folders are ignored, as GenEval does
    with pytest.raises(ValueError, match="no images in GenEval's layout"):
        layout.scan(str(empty))
    with pytest.raises(SystemExit, match="do not also pass"):
        main(["eval", "geneval", "--images-only", str(empty), "--metadata", metadata_file, "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="unknown GenEval rule options"):
        GenEvalEvaluator("shapes", rule_options={"thresh": 0.2})
    with pytest.raises(ValueError, match="does not name colours"):
        GenEvalEvaluator(_NoColours(), color_classifier="detector")


class _NoColours(Detector):
    name = "boxes-only"

    def detect(self, image):
        return []


def test_rule_flags_reach_the_rules(tmp_path, metadata_file, monkeypatch):
    _patch_loader(monkeypatch, RenderPipeline(ROWS))
    out = str(tmp_path / "strict")
    # a threshold above every score keeps nothing: every image fails "expected X>=N, found 0"
    main(["eval", "geneval", "--pipeline", "p", "--metadata", metadata_file, "--out", out, "--images-per-prompt", "1",
          "--threshold", "1.0", "--counting-threshold", "1.0", "--limit", "6"])
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["rules"]["threshold"] == 1.0 and summary["images"] == 6 and summary["overall"] == 0.0
    assert all(", found 0" in r["reason"] for r in _read_results(out))


def test_geneval_reward_matches_the_shapes_judge():
    from diffalign.rewards import load

    rng = np.random.default_rng(1)
    rows = ROWS[:6]
    images = [shapes.render_row(r, rng) for r in rows] + [shapes.render_row(miss(r, rng), rng) for r in rows]
    reward = load("geneval")  # detector "auto": decided on the first batch
    assert reward.protocol_label == "GenEval protocol, detector=auto"
    scores = reward(np.stack(images), None, rows + rows)
    assert reward.protocol_label == "GenEval protocol, detector=shapes"
    assert scores.tolist() == [1.0] * 6 + [0.0] * 6
    assert reward.last_reasons[:6] == [""] * 6 and all(reward.last_reasons[6:])
    assert load("shapes")(np.stack(images), None, rows + rows).tolist() == scores.tolist()
    assert not reward.differentiable and reward.requires_metadata


def test_official_metadata_picks_the_coco_detector(tmp_path):
    from conftest import shared_path

    from diffalign.geneval.evaluator import auto_detector

    assert auto_detector(ROWS) == "shapes"
    official = shared_path("data", "geneval", "evaluation_metadata.jsonl")
    if not os.path.isfile(official):
        pytest.skip("GenEval's metadata is only in ../shared/data/geneval")
    assert auto_detector(read_metadata(official)) == "mask2former"


@pytest.mark.slow
def test_shipped_shapes_pipeline_through_the_job(tmp_path, metadata_file):
    try:
        path = shapes.pretrained_path("sd")
    except FileNotFoundError as err:
        pytest.skip(f"shipped shapes pipeline not present: {err}")
    from diffalign.shapes.judge import judge_batch, summarize

    out = str(tmp_path / "sd")
    assert main(["eval", "geneval", "--pipeline", "shapes-sd", "--metadata", metadata_file, "--out", out,
                 "--images-per-prompt", "2", "--device", "cpu"]) == 0
    summary = json.load(open(os.path.join(out, "summary.json")))
    settings = generation.sampling_settings("shapes-sd", job.GENEVAL_SAMPLING)
    assert summary["generation"]["num_inference_steps"] == settings["num_inference_steps"] != 50  # shipped settings win
    assert summary["detector"]["name"] == "shapes"  # auto: shapes metadata
    results = _read_results(out)
    images = [np.asarray(Image.open(r["filename"])) for r in results]
    rows = [json.loads(r["metadata"]) for r in results]
    assert [c for c, _ in judge_batch(images, rows)] == [r["correct"] for r in results]
    assert summarize(rows, [r["correct"] for r in results])["overall"] == pytest.approx(summary["overall"])
    assert 0.0 < summary["overall"] < 1.0 and os.path.isfile(path + "/model_index.json")
