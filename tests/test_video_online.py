"""Online RL and reward gradients on video: the differentiable moving-shapes motion reward (right
way round beats reversed and still clips; gradients reach the pixels; rows it cannot isolate score 0),
the ``shapes_video`` prompt source, and DDPO (temporal judge) / DRaFT (motion reward) end to end on the
tiny random CogVideoX with moving-shapes prompts."""
import math

import pytest
import torch

from diffalign.rewards import load
from diffalign.shapes import render_video
from diffalign.shapes.video import VIDEO_CATEGORIES, all_video_rows
from diffalign.train.online.config import PromptsConfig
from diffalign.train.online.prompts import PromptSet


def _clip(row, frames=5, size=24):
    return torch.from_numpy(render_video(row, num_frames=frames, size=size, seed=0)).permute(0, 3, 1, 2).float() / 255.0


def _row(tag, prompt):
    return next(r for r in all_video_rows(tag) if r["prompt"] == prompt)


@pytest.mark.slow
def test_motion_reward_prefers_the_asked_direction_and_has_gradients():
    rows = [_row("motion", "a video of a red circle moving left"),
            _row("passing", "a video of a red circle passing a blue square from left to right")]
    good = torch.stack([_clip(r) for r in rows])
    reward = load("shapes_video_motion")
    right, reverse = reward(good, None, rows), reward(good.flip(1), None, rows)
    still = reward(good[:, :1].expand_as(good).contiguous(), None, rows)
    assert (right > still).all() and (still > reverse).all(), (right, still, reverse)
    assert right[0] > 0.8 and reverse[0] < 0.0  # presence ~0.8, travel 0.28-0.42 of the side vs scale 0.15
    pixels = good.clone().requires_grad_()
    reward(pixels, None, rows).sum().backward()
    assert pixels.grad.abs().sum() > 0 and torch.isfinite(pixels.grad).all()


def test_motion_reward_scores_rows_it_cannot_isolate_zero():
    row = _row("two_motion", "a video of a circle moving left and a square moving right")
    pixels = _clip(row)[None].requires_grad_()
    out = load("shapes_video_motion")(pixels, None, [row])
    out.sum().backward()
    assert out.item() == 0.0 and pixels.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="reward 'shapes_video_motion' needs metadata"):
        load("shapes_video_motion")(pixels.detach(), ["a prompt"], None)


def _drawn_as(row, shape):
    return {**row, "include": [{**c, "class": shape} for c in row["include"]]}


def test_motion_reward_shape_term_prefers_the_asked_shape():
    """With ``shape_weight`` the reward adds the detector's template fit of the asked shape: on rendered
    single-object clips the clip drawn with the asked shape fits better than the same clip drawn with any
    other shape, in nearly every case; the term is off by default and passes gradients to the pixels."""
    from diffalign.rewards.shapes_video_motion import soft_assignment, template_fit
    from diffalign.shapes.vocab import COLOR_NAMES, SHAPES

    rows = [r for r in all_video_rows("motion") if r["include"][0].get("color")][7::25]
    assert {r["include"][0]["class"] for r in rows} == set(SHAPES)

    def fit(row, drawn, frames=3):
        mask = soft_assignment(_clip(_drawn_as(row, drawn), frames=frames, size=32), 25.0)[:, COLOR_NAMES.index(row["include"][0]["color"])]
        mask = torch.relu(mask - 0.2) / 0.8
        return float(torch.stack([template_fit(m, row["include"][0]["class"]) for m in mask]).mean())

    wins = [fit(r, r["include"][0]["class"]) > fit(r, other) for r in rows for other in SHAPES if other != r["include"][0]["class"]]
    assert sum(wins) >= 0.9 * len(wins), wins
    assert template_fit(torch.zeros(8, 8), "square").item() == 0.0  # no object, no fit
    clips = torch.stack([_clip(r, size=32) for r in rows[:2]])
    plain, shaped = load("shapes_video_motion"), load("shapes_video_motion", shape_weight=2.0)
    off = load("shapes_video_motion", shape_weight=0.0)(clips, None, rows[:2])
    assert torch.equal(off, plain(clips, None, rows[:2]))
    pixels = clips.clone().requires_grad_()
    out = shaped(pixels, None, rows[:2])
    out.sum().backward()
    fits = torch.tensor([fit(r, r["include"][0]["class"], frames=5) for r in rows[:2]])
    expected = (2 * plain(clips, None, rows[:2]) + 2.0 * fits) / (2 + 2.0)  # (presence + motion + w * shape) / (2 + w)
    assert torch.allclose(out.detach(), expected, atol=1e-5), (out, expected)
    assert pixels.grad.abs().sum() > 0 and torch.isfinite(pixels.grad).all()
    with pytest.raises(ValueError, match="shape_weight"):
        load("shapes_video_motion", shape_weight=-1.0)


@pytest.mark.slow
def test_shapes_video_prompt_source_is_balanced_and_split():
    train = PromptSet.from_config(PromptsConfig(source="shapes_video", shapes_rows=12), seed=0)
    held = PromptSet.from_config(PromptsConfig(source="shapes_video"), evaluation=True, seed=0, num_rows=10)
    assert len(train) == 12 and len(held) == 10
    assert [r["tag"] for r in held.rows] == list(VIDEO_CATEGORIES) * 2
    assert not {r["prompt"] for r in train.rows} & {r["prompt"] for r in held.rows}
    some = PromptSet.from_config(PromptsConfig(source="shapes_video", categories=["motion", "passing"], shapes_rows=5), seed=1)
    assert [r["tag"] for r in some.rows] == ["motion", "passing", "motion", "passing", "motion"]
    with pytest.raises(ValueError, match="unknown moving-shapes category 'colors'"):
        PromptSet.from_config(PromptsConfig(source="shapes_video", categories=["colors"]))


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ddpo", "draft"])
def test_video_trainers_with_shapes_video_rewards(tmp_path, trainer):
    """DDPO with the temporal judge and DRaFT-K with the motion reward train a LoRA on the tiny
    CogVideoX from moving-shapes prompts, with the judge as held-out (gold) reward."""
    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.tiny import build_tiny_pipeline
    from diffalign.train import get_trainer_class
    from diffalign.train.metrics import read_metrics
    from diffalign.train.online import config as C

    cfg = (C.DDPOConfig if trainer == "ddpo" else C.DRaFTConfig)(output_dir=str(tmp_path / "out"), max_steps=1, progress_bar=False)
    cfg.prompts.source, cfg.prompts.shapes_rows = "shapes_video", 8
    cfg.lora.rank, cfg.optim.lr = 4, 1e-3
    s = cfg.sampling
    s.num_inference_steps, s.batch_size, s.guidance_scale, s.height, s.width, s.num_frames = 3, 2, 3.0, 16, 16, 5
    if trainer == "ddpo":
        cfg.reward.name, cfg.reward.workers, cfg.batch_size = "shapes_video", 0, 2
    else:
        cfg.reward.name, cfg.backprop_steps = "shapes_video_motion", 1
        cfg.prompts.categories = ["motion", "passing"]
    if trainer == "draft":  # the judge is slow on the random model's noise (seconds a clip): DDPO scores 2 clips only
        cfg.evaluation.every_steps, cfg.evaluation.num_prompts, cfg.evaluation.batch_size = 1, 2, 2
        cfg.evaluation.gold_reward.name = "shapes_video"
    adapter = adapter_for(build_tiny_pipeline("cogvideox"))
    runner = get_trainer_class(trainer)(cfg, adapter=adapter)
    before = {n: p.detach().clone() for n, p in runner.trainable_named_parameters().items()}
    rows = read_metrics(runner.train().metrics_path)
    if trainer == "draft":
        assert [r["step"] for r in rows] == [0, 1]
        assert all(0.0 <= r["gold_reward_mean"] <= 1.0 for r in rows)
    else:
        assert 0.0 <= rows[-1]["reward_mean"] <= 1.0
    assert math.isfinite(rows[-1]["reward_mean"])
    after = dict(runner.trainable_named_parameters())
    assert any(not torch.equal(after[n], before[n]) for n in before), "no LoRA weight moved"


@pytest.mark.slow
def test_vae_gradient_checkpointing_keeps_the_gradient(tmp_path):
    """``model.vae_gradient_checkpointing`` turns on the VAE's own checkpointing: the decoded clip and
    the gradient reaching the latents are the same; a VAE without it is a one-line error."""
    import types

    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.models import use_vae_gradient_checkpointing
    from diffalign.pipelines.tiny import build_tiny_pipeline

    adapter = adapter_for(build_tiny_pipeline("cogvideox"))
    latents = torch.randn(1, 2, adapter.vae.config.latent_channels, 4, 4, generator=torch.Generator().manual_seed(0))

    def grad():
        x = latents.clone().requires_grad_()
        video = adapter.decode_latents(x)
        (video * torch.linspace(0, 1, video.shape[-1])).sum().backward()
        return video.detach(), x.grad

    plain_video, plain_grad = grad()
    use_vae_gradient_checkpointing(adapter.pipe)
    assert adapter.vae.is_gradient_checkpointing
    video, g = grad()
    torch.testing.assert_close(video, plain_video)
    torch.testing.assert_close(g, plain_grad)
    assert g.abs().sum() > 0
    with pytest.raises(ValueError, match=r"model.vae_gradient_checkpointing: the VAE of this pipeline \(SimpleNamespace\)"):
        use_vae_gradient_checkpointing(types.SimpleNamespace(vae=types.SimpleNamespace()))
