"""Generation shared by the jobs (PIPE[+LORA], seeds), ``diffalign sample``, the win-rate maths against
hand values, ``diffalign eval compare`` end to end, and the HPSv2 benchmark's averaging and job."""
import json
import os
import types

import numpy as np
import pytest
import torch
from PIL import Image

import diffalign  # noqa: F401  (compat shim first)
from diffalign import rewards, shapes
from diffalign.cli import main
from diffalign.eval import hps_benchmark, scoring
from diffalign.pipelines import generation
from diffalign.pipelines.generation import PipelineSpec, generate, sampling_settings
from diffalign.eval.prompts import read_prompt_file
from diffalign.eval.winrate import wilson_interval, win_rate

Z2 = 1.959963984540054**2  # z^2 for a two-sided 95% interval


# --------------------------------------------------------------------------- win-rate maths


def test_wilson_interval_hand_values():
    # p = 0.8, n = 10: centre (0.8 + z²/20) / (1 + z²/10), half-width z sqrt(0.016 + z²/400) / (1 + z²/10)
    assert wilson_interval(8, 10) == pytest.approx((0.4901625, 0.9433178), abs=1e-6)
    assert wilson_interval(0, 10) == pytest.approx((0.0, Z2 / (10 + Z2)))  # 0.2775
    assert wilson_interval(12, 12) == pytest.approx((12 / (12 + Z2), 1.0))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo90, hi90 = wilson_interval(8, 10, confidence=0.90)
    assert 0.4901625 < lo90 and hi90 < 0.9433178  # narrower at 90%
    with pytest.raises(ValueError, match="within"):
        wilson_interval(11, 10)


def test_win_rate_counts_ties_as_half_and_respects_direction():
    a = [5, 5, 5, 5, 5, 5, 5, 2.0, 2.0, 1]
    b = [1, 2, 3, 4, 4.5, 0, -1, 2.0, 2.0, 3]  # 7 wins, 2 ties, 1 loss
    wr = win_rate(a, b)
    assert (wr.wins, wr.ties, wr.losses, wr.pairs) == (7, 2, 1, 10)
    assert wr.win_rate == pytest.approx(0.8) and (wr.low, wr.high) == pytest.approx((0.4901625, 0.9433178), abs=1e-6)
    assert wr.win_rate_decisive == pytest.approx(7 / 8)
    assert (wr.decisive_low, wr.decisive_high) == pytest.approx((0.5291118, 0.9775825), abs=1e-6)
    assert (wr.mean_a, wr.mean_b) == pytest.approx((4.0, 2.05))
    lower = win_rate(a, b, higher_is_better=False)  # A's higher scores are now worse
    assert (lower.wins, lower.ties, lower.losses) == (1, 2, 7) and lower.win_rate == pytest.approx(0.2)
    assert (lower.low, lower.high) == pytest.approx((1 - 0.9433178, 1 - 0.4901625), abs=1e-6)
    # differences a - b: 4, 3, 2, 1, 0.5, 5, 6, 0, 0, -2; within 1.5 -> tie: 1, 0.5, 0, 0
    tol = win_rate(a, b, tie_tolerance=1.5)
    assert (tol.wins, tol.ties, tol.losses) == (5, 4, 1) and tol.win_rate == pytest.approx(0.7)
    all_ties = win_rate([1, 1], [1, 1])
    assert all_ties.win_rate == 0.5 and all_ties.win_rate_decisive is None
    with pytest.raises(ValueError, match="differ in length"):
        win_rate([1], [1, 2])


# --------------------------------------------------------------------------- generation / sample


def test_pipeline_spec_and_sampling_settings(tmp_path):
    assert PipelineSpec.parse("runwayml/stable-diffusion-v1-5+out/dpo/lora") == PipelineSpec(
        "runwayml/stable-diffusion-v1-5", "out/dpo/lora")
    assert PipelineSpec.parse("shapes-sd") == PipelineSpec("shapes-sd")
    assert PipelineSpec.parse("a+b", lora="c") == PipelineSpec("a+b", "c")
    assert PipelineSpec("p", "l").label == "p+l"
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / generation.SAMPLING_FILE).write_text(json.dumps({"num_inference_steps": 20, "height": 64}))
    defaults = {"num_inference_steps": 50, "guidance_scale": 9.0}
    assert sampling_settings(str(folder), defaults, guidance_scale=None, height=32) == {
        "num_inference_steps": 20, "guidance_scale": 9.0, "height": 32}
    assert sampling_settings("some/hub-id", defaults) == defaults


def test_generate_seeds_are_per_image_and_batch_independent():
    from diffalign.pipelines.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd")
    pipe.set_progress_bar_config(disable=True)
    kw = dict(images_per_prompt=2, seed=3, num_inference_steps=2, height=32, width=32)
    prompts = ["a red circle", "two blue squares", "a green triangle"]
    together = generate(pipe, prompts, batch_size=6, **kw)
    seen = []
    one_by_one = generate(pipe, prompts, batch_size=4, on_batch=seen.extend, **kw)
    assert [(i, k) for i, k, _ in seen] == [(i, k) for i in range(3) for k in range(2)]
    for x, y in zip(sum(together, []), sum(one_by_one, [])):
        assert np.abs(np.asarray(x, float) - np.asarray(y, float)).mean() < 0.05  # same noise (float noise only)
    first, second = (np.asarray(together[0][k], float) for k in (0, 1))
    assert np.abs(first - second).mean() > 5  # seed + 0 vs seed + 1


def test_generate_takes_a_count_per_prompt():
    seeds = []

    def pipe(prompt, generator, output_type="pil", **sampling):
        seeds.extend((p, g.initial_seed()) for p, g in zip(prompt, generator))
        return types.SimpleNamespace(images=[Image.new("RGB", (4, 4)) for _ in prompt])

    out = generate(pipe, ["a", "b", "c"], images_per_prompt=[1, 3, 2], seed=10, batch_size=4)
    assert [len(images) for images in out] == [1, 3, 2]
    assert seeds == [("a", 10), ("b", 10), ("b", 11), ("b", 12), ("c", 10), ("c", 11)]
    with pytest.raises(ValueError, match="2 counts for 3 prompts"):
        generate(pipe, ["a", "b", "c"], images_per_prompt=[1, 2])
    with pytest.raises(ValueError, match=">= 1, got 0"):
        generate(pipe, ["a", "b"], images_per_prompt=[1, 0])


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory):
    """A tiny SD pipeline saved as a folder, and a LoRA for its UNet."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from diffalign.pipelines.tiny import build_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny_sd")
    pipe = build_tiny_pipeline("sd")
    pipe.save_pretrained(root / "pipe")
    (root / "pipe" / generation.SAMPLING_FILE).write_text(json.dumps({"num_inference_steps": 2, "height": 32, "width": 32}))
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(str(root / "lora"), unet_lora_layers=layers)
    return str(root / "pipe"), str(root / "lora")


@pytest.mark.slow
def test_sample_command_with_and_without_lora(tiny_sd_folder, tmp_path):
    pipe_dir, lora_dir = tiny_sd_folder
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\ntwo blue squares\n")
    outs = {}
    for name, extra in (("base", []), ("lora", ["--lora", lora_dir])):
        out = tmp_path / name
        assert main(["sample", "--pipeline", pipe_dir, *extra, "--prompts", str(prompts), "--prompt", "a diamond",
                     "--out", str(out), "--images-per-prompt", "2", "--device", "cpu"]) == 0
        records = [json.loads(line) for line in open(out / "samples.jsonl")]
        assert [(r["prompt"], r["image_index"], r["seed"]) for r in records] == [
            (p, k, k) for p in ("a red circle", "two blue squares", "a diamond") for k in (0, 1)]
        assert records[0]["num_inference_steps"] == 2  # the folder's shipped settings
        assert os.path.isfile(out / "grid.png")
        outs[name] = [np.asarray(Image.open(out / r["file"]), float) for r in records]
    assert outs["base"][0].shape == (32, 32, 3)
    assert np.mean([np.abs(a - b).mean() for a, b in zip(outs["base"], outs["lora"])]) > 1.0  # the LoRA changes images
    with pytest.raises(FileNotFoundError, match="LoRA .* not found"):  # --debug: the exception itself
        main(["sample", "--pipeline", pipe_dir, "--lora", str(tmp_path / "none"), "--prompt", "x", "--out", str(tmp_path / "x"), "--debug"])
    assert main(["sample", "--pipeline", pipe_dir, "--lora", str(tmp_path / "none"), "--prompt", "x", "--out", str(tmp_path / "x")]) == 1


def test_prompt_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(["one", {"prompt": "two", "tag": "t"}]))
    assert read_prompt_file(tmp_path / "a.json") == [{"prompt": "one"}, {"prompt": "two", "tag": "t"}]
    (tmp_path / "b.jsonl").write_text('{"prompt": "x"}\n{"text": "y"}\n')
    with pytest.raises(ValueError, match=r"b.jsonl:2: missing or empty 'prompt'"):
        read_prompt_file(tmp_path / "b.jsonl")
    (tmp_path / "c.json").write_text('{"prompt": "x"}')
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_prompt_file(tmp_path / "c.json")
    assert rewards.parse_reward_spec("hpsv2.1:path=/m/hps,scale=0.5,flag=true") == (
        "hpsv2.1", {"path": "/m/hps", "scale": 0.5, "flag": True})
    with pytest.raises(ValueError, match="not key=value"):
        rewards.parse_reward_spec("clip_score:oops")


# --------------------------------------------------------------------------- compare


class ShapesPipeline:
    """Renders each prompt's shapes scene (``good``) or a near miss of it."""

    def __init__(self, rows, good=True):
        from diffalign.shapes.negatives import near_miss_kinds, near_miss_row

        self.rows = {r["prompt"]: r for r in rows}
        self.good = good
        self.miss = lambda row, rng: near_miss_row(row, near_miss_kinds(row)[0], rng)

    def __call__(self, prompt, generator, output_type="pil", **sampling):
        out = []
        for p, g in zip(prompt, generator):
            rng = np.random.default_rng(g.initial_seed())
            row = self.rows[p] if self.good else self.miss(self.rows[p], rng)
            out.append(Image.fromarray(shapes.render_row(row, rng)))
        return types.SimpleNamespace(images=out)


@pytest.mark.slow
def test_compare_end_to_end(tmp_path, monkeypatch, capsys):
    rows = [shapes.all_rows(tag)[1] for tag in shapes.CATEGORIES]
    prompts = tmp_path / "rows.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = []

    def fake_load(spec, device=None, dtype=None):
        loaded.append(spec)
        return ShapesPipeline(rows, good=spec.pipeline == "good")

    monkeypatch.setattr(generation, "load_pipeline_spec", fake_load)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lora-a").mkdir()  # the LoRA must exist: the job checks before it generates
    out = tmp_path / "cmp"
    assert main(["eval", "compare", "--a", "good+lora-a", "--b", "org/bad@v1.0", "--prompts", str(prompts), "--reward", "shapes",
                 "jpeg_incompressibility", "--images-per-prompt", "2", "--out", str(out)]) == 0
    assert loaded == [PipelineSpec("good", "lora-a"), PipelineSpec("org/bad", None, "v1.0")]
    summary = json.load(open(out / "summary.json"))
    assert (summary["a"], summary["b"], summary["pairs"]) == ("good+lora-a", "org/bad@v1.0", 12)
    judge = summary["rewards"]["shapes"]
    assert (judge["wins"], judge["ties"], judge["losses"], judge["win_rate"]) == (12, 0, 0, 1.0)
    assert judge["low"] == pytest.approx(12 / (12 + Z2)) and judge["high"] == 1.0
    results = [json.loads(line) for line in open(out / "results.jsonl")]
    assert [r["scores"]["shapes"] for r in results] == [[1.0, 0.0]] * 12
    # the jpeg reward's summary is the win-rate of its own per-pair scores
    jpeg = summary["rewards"]["jpeg_incompressibility"]
    wr = win_rate([r["scores"]["jpeg_incompressibility"][0] for r in results],
                  [r["scores"]["jpeg_incompressibility"][1] for r in results])
    assert (jpeg["wins"], jpeg["ties"], jpeg["losses"]) == (wr.wins, wr.ties, wr.losses)
    assert os.path.isfile(results[0]["file_a"]) and os.path.isfile(results[0]["file_b"])
    assert "shapes: A wins 12, ties 0, B wins 0; win-rate 1.000" in capsys.readouterr().out
    md = open(out / "report.md").read()
    assert "| shapes | 12 | 0 | 0 | 1.000 | [0.758, 1.000] |" in md


# --------------------------------------------------------------------------- HPSv2 benchmark


def test_hps_style_scores_follow_the_benchmark():
    scores = [0.2] * 80 + [0.3] * 20  # chunks of 80: means 20 and 30 (x100)
    assert hps_benchmark.style_score(scores) == pytest.approx((25.0, 5.0))
    summary = hps_benchmark.summarize({"hpsv2": {"anime": scores, "photo": [0.25] * 10}})
    assert summary["hpsv2"]["styles"]["anime"] == pytest.approx({"score": 25.0, "std": 5.0, "images": 100})
    assert summary["hpsv2"]["styles"]["photo"]["score"] == pytest.approx(25.0)
    assert summary["hpsv2"]["average"] == pytest.approx(100 * (16 + 6 + 2.5) / 110)  # over all images


class ColourPipeline:
    """A solid image whose colour depends on the prompt's length."""

    def __call__(self, prompt, generator, output_type="pil", **sampling):
        return types.SimpleNamespace(images=[Image.new("RGB", (40, 40), (10 * len(p) % 255, 80, 160)) for p in prompt])


def test_hps_benchmark_job(tmp_path, monkeypatch):
    import open_clip

    from diffalign.rewards import load

    config = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    torch.save({"state_dict": open_clip.CLIP(**config).state_dict()}, tmp_path / "HPS_v2.1_compressed.pt")
    prompt_dir = tmp_path / "bench"
    prompt_dir.mkdir()
    for i, style in enumerate(hps_benchmark.STYLES):
        (prompt_dir / f"{style}.json").write_text(json.dumps([f"{style} prompt {j}" + "!" * (i + j) for j in range(3)]))
    monkeypatch.setattr(generation, "load_pipeline_spec", lambda spec, device=None, dtype=None: ColourPipeline())
    monkeypatch.setattr(rewards, "load", lambda spec, device=None, **kw: load("hpsv2.1", model_config=config, **kw))
    out = tmp_path / "hps"
    assert main(["eval", "hps", "--pipeline", "p", "--prompts", str(prompt_dir), "--out", str(out), "--reward", "hpsv2.1",
                 "--hps-path", str(tmp_path), "--limit", "2"]) == 0
    summary = json.load(open(out / "summary.json"))
    assert summary["pipeline"] == "p" and sorted(os.listdir(out / "images")) == sorted(hps_benchmark.STYLES)
    assert sorted(os.listdir(out / "images" / "anime")) == ["00000.jpg", "00001.jpg"]
    # scores recomputed directly from the saved images
    reward = load("hpsv2.1", path=str(tmp_path), model_config=config)
    direct = {}
    for style in hps_benchmark.STYLES:
        texts = json.load(open(prompt_dir / f"{style}.json"))[:2]
        images = [Image.open(out / "images" / style / f"{j:05d}.jpg").convert("RGB") for j in range(2)]
        direct[style] = scoring.score_images(reward, images, texts)
        assert summary["scores"]["hpsv2.1"]["styles"][style]["score"] == pytest.approx(100 * np.mean(direct[style]), abs=1e-4)
    assert summary["scores"]["hpsv2.1"]["average"] == pytest.approx(100 * np.mean(sum(direct.values(), [])), abs=1e-4)
    # the same folder scored with --images gives the same numbers
    again = hps_benchmark.run_benchmark(str(tmp_path / "again"), {s: json.load(open(prompt_dir / f"{s}.json"))[:2]
                                                                  for s in hps_benchmark.STYLES},
                                        {"hpsv2.1": reward}, images_dir=str(out / "images"))
    assert again["scores"]["hpsv2.1"]["average"] == pytest.approx(summary["scores"]["hpsv2.1"]["average"], abs=1e-5)
    with pytest.raises(FileNotFoundError, match="zhwang/HPDv2"):
        hps_benchmark.read_style_prompts(str(tmp_path))
