"""The online and reward-gradient trainers on the tiny pipelines: every trainer trains on every
relevant family, the first update is exactly on-policy, D3PO pairs and Flow-GRPO windows are what
they claim, resume is exact, non-differentiable rewards are refused, outputs load into plain
diffusers, and ``diffalign train`` runs a recipe."""
from __future__ import annotations

import math
import os
import warnings

import pytest
import torch

from diffalign.config import load_config
from diffalign.pipelines import adapter_for
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train import get_trainer_class
from diffalign.train.metrics import read_metrics
from diffalign.train.online import config as C
from diffalign.pipelines.sampling import step_gradient_scales
from diffalign.train_command import list_recipes, recipe_path, trainer_name

CONFIGS = {
    "ddpo": C.DDPOConfig, "d3po": C.D3POConfig, "flow_grpo": C.FlowGRPOConfig,
    "alignprop": C.AlignPropConfig, "draft": C.DRaFTConfig, "refl": C.ReFLConfig,
}


def make_config(tmp_path, trainer: str, family: str, **overrides):
    cfg = CONFIGS[trainer](output_dir=str(tmp_path / "out"), max_steps=2, progress_bar=False)
    cfg.lora.rank, cfg.optim.lr, cfg.optim.weight_decay = 4, 1e-3, 0.0  # weights move only by gradient
    cfg.prompts.shapes_rows = 24
    s = cfg.sampling
    s.num_inference_steps, s.batch_size, s.num_batches, s.guidance_scale = 4, 4, 1, 3.0
    # policy-gradient trainers: a reward that always varies; reward-gradient ones: a differentiable
    # one, on prompts that all ask for colours (so every sample has a gradient)
    cfg.reward.name, cfg.reward.workers = "jpeg_compressibility", 1
    if trainer in ("alignprop", "draft", "refl"):
        cfg.reward.name, cfg.reward.workers = "shapes_color", 0
        cfg.prompts.categories = ["colors", "color_attr"]
    if family == "qwenimage":
        s.height = s.width = 32
    if family == "flux":
        s.guidance_scale = 1.0  # guidance-distilled: the guidance value is embedded, no CFG
    if family in ("cogvideox", "wan", "hunyuanvideo15", "ltx2"):
        s.height = s.width = 32 if family == "wan" else 16
        s.num_frames = 5
        cfg.reward.options = {"reward": cfg.reward.name, "frames": "uniform", "num_frames": 2}
        cfg.reward.name = "video"
    if trainer in ("ddpo", "d3po"):
        cfg.batch_size = 2
    if trainer == "flow_grpo":
        cfg.group_size, s.num_batches, cfg.ema_update_interval = 2, 2, 1
    if trainer == "alignprop":
        cfg.truncation, cfg.truncation_min, cfg.truncation_max = "uniform", 1, 4
    if trainer == "refl":
        cfg.step_min, cfg.step_max = 1, 3
    if trainer in ("alignprop", "draft", "refl"):
        s.batch_size, cfg.gradient_accumulation_steps = 2, 2
    for key, value in overrides.items():
        target = cfg
        *path, name = key.split(".")
        for part in path:
            target = getattr(target, part)
        setattr(target, name, value)
    return cfg


def run(cfg, family: str):
    trainer = get_trainer_class(cfg.trainer)(cfg, adapter=adapter_for(build_tiny_pipeline(family)))
    result = trainer.train()
    return trainer, result, read_metrics(result.metrics_path)


CASES = [
    ("ddpo", "sd", {}), ("ddpo", "sdxl", {}),
    ("d3po", "sd", {}), ("d3po", "sdxl", {}),
    ("flow_grpo", "sd3", {}),
    ("flow_grpo", "sd3", {"sde_type": "cps", "sde_window_size": 2, "sde_window_range": [0, 3],
                          "sampling.noise_level": 0.8, "same_latent": True, "beta": 0.0}),
    ("alignprop", "sd", {}), ("alignprop", "sdxl", {}), ("alignprop", "cogvideox", {}),
    ("draft", "sd", {}), ("draft", "sdxl", {"lv_samples": 2}), ("draft", "cogvideox", {"backprop_steps": 0}),
    ("refl", "sd", {}), ("refl", "sdxl", {}), ("refl", "cogvideox", {}),
    # the flow DiT families: Flow-GRPO (SDE and the CPS window; on Wan the DanceGRPO-style video
    # setting) and the reward-gradient trainers
    ("flow_grpo", "flux", {}), ("flow_grpo", "wan", {}),
    ("flow_grpo", "flux", {"sde_type": "cps", "sde_window_size": 2, "sde_window_range": [0, 3], "beta": 0.0}),
    ("alignprop", "flux", {}), ("draft", "flux", {}), ("refl", "flux", {}),
    ("alignprop", "wan", {}), ("draft", "wan", {"backprop_steps": 0}), ("refl", "wan", {}),
    ("flow_grpo", "qwenimage", {}), ("refl", "qwenimage", {}),
    ("flow_grpo", "flux2", {}),
    ("flow_grpo", "flux2", {"sde_type": "cps", "sde_window_size": 2, "sde_window_range": [0, 3], "beta": 0.0}),
    ("draft", "flux2", {}), ("refl", "flux2", {}),
    ("flow_grpo", "zimage", {}), ("draft", "zimage", {}), ("refl", "zimage", {}),
    ("flow_grpo", "hunyuanvideo15", {}), ("draft", "hunyuanvideo15", {"backprop_steps": 0}), ("refl", "hunyuanvideo15", {}),
    ("flow_grpo", "ltx2", {}),
    ("flow_grpo", "ltx2", {"sde_type": "cps", "sde_window_size": 2, "sde_window_range": [0, 3], "beta": 0.0}),
    ("draft", "ltx2", {"backprop_steps": 0}), ("refl", "ltx2", {}),
]


@pytest.mark.parametrize("trainer,family,overrides", CASES, ids=[f"{t}-{f}-{i}" for i, (t, f, _) in enumerate(CASES)])
@pytest.mark.slow
def test_every_trainer_trains_every_family(tmp_path, trainer, family, overrides):
    cfg = make_config(tmp_path, trainer, family, **overrides)
    adapter = adapter_for(build_tiny_pipeline(family))
    if family in ("flux", "wan", "qwenimage", "flux2", "zimage", "ltx2"):
        adapter.max_sequence_length = 16  # short text sequences keep the tiny runs fast
    frozen = {n: p.detach().clone() for n, p in adapter.denoiser.named_parameters()}
    runner = get_trainer_class(trainer)(cfg, adapter=adapter)
    lora = {n: p.detach().clone() for n, p in runner.trainable_named_parameters().items()}
    assert lora and all("lora" in n for n in lora)
    result = runner.train()
    rows = read_metrics(result.metrics_path)
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert "reward_mean" in row and row["optimizer_steps"] >= 1
        assert all(v is not None and math.isfinite(v) for v in row.values()), row
    params = dict(adapter.denoiser.named_parameters())
    assert any(not torch.equal(params[n], lora[n]) for n in lora), "no LoRA weight moved"
    assert all(torch.equal(params[n], frozen[n]) for n in frozen if n in params), "a frozen weight moved"
    assert os.path.exists(result.lora_path)
    assert sorted(os.listdir(os.path.join(cfg.output_dir, "samples"))) == ["step-000001.png", "step-000002.png"]


@pytest.mark.parametrize("trainer,family", [("ddpo", "sd"), ("flow_grpo", "sd3")])
@pytest.mark.slow
def test_first_update_is_exactly_on_policy(tmp_path, trainer, family):
    # several updates per iteration: the first ones' ratios are exactly 1, later ones move
    cfg = make_config(tmp_path, trainer, family, max_steps=1, num_inner_epochs=2)
    if trainer == "ddpo":
        cfg.batch_size = 2  # 4 rollouts in micro-batches of 2: shuffled, time-permuted, re-batched
    _, _, rows = run(cfg, family)
    if trainer == "ddpo":
        # re-batched micro-batches (2 of 4 rollouts) reach the convolutions with another batch size than
        # the rollout, so oneDNN may sum in another order: equal to float32 rounding, not bitwise
        assert rows[0]["onpolicy_log_ratio_max"] < 1e-5
    else:
        assert rows[0]["onpolicy_log_ratio_max"] == 0.0
    assert rows[0]["log_ratio_max"] > 1e-5  # the policy did change within the iteration (above the tolerance)
    assert rows[0]["optimizer_steps"] == 4


def test_d3po_pairs_share_prompt_and_initial_noise(tmp_path):
    cfg = make_config(tmp_path, "d3po", "sd", max_steps=1)
    trainer = get_trainer_class("d3po")(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    traj = trainer.collect(0)
    n = len(traj) // 2
    assert traj.prompts[:n] == traj.prompts[n:]
    assert torch.equal(traj.latents[:n, 0], traj.latents[n:, 0])
    assert not torch.equal(traj.next_latents[:n, -1], traj.next_latents[n:, -1])  # different chain noise
    traj, stats = trainer.compute_advantages(traj, 0)
    assert torch.equal(traj.advantages[:n], -traj.advantages[n:])
    assert set(traj.advantages.tolist()) <= {-1.0, 0.0, 1.0}


def test_ddpo_groups_normalise_each_prompt_against_its_own_samples(tmp_path):
    cfg = make_config(tmp_path, "ddpo", "sd", max_steps=1, group_size=2, tracker_min_count=2)
    trainer = get_trainer_class("ddpo")(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    traj = trainer.collect(0)
    assert len(traj) == 4 and len(set(traj.prompts)) == 2
    assert all(traj.prompts.count(p) == 2 for p in traj.prompts)
    traj, _ = trainer.compute_advantages(traj, 0)
    rewards = traj.rewards.double()
    distinct = 0
    for p in set(traj.prompts):  # two samples of a prompt: (r - mean) / std = -1 and +1 (0, 0 on a tie)
        idx = [i for i, q in enumerate(traj.prompts) if q == p]
        r = rewards[idx]
        expected = (r - r.mean()) / (r.std(unbiased=False) + 1e-6)
        assert torch.allclose(traj.advantages[idx].double(), expected, atol=1e-4)
        if abs(float(r[0] - r[1])) > 1e-3:
            distinct += 1
            assert sorted(round(float(a)) for a in traj.advantages[idx]) == [-1, 1]
    assert distinct >= 1


@pytest.mark.parametrize("trainer", ["ddpo", "d3po"])
def test_exclude_final_steps_never_trains_the_last_steps(tmp_path, trainer):
    cfg = make_config(tmp_path, trainer, "sd", max_steps=1, exclude_final_steps=1)
    t = get_trainer_class(trainer)(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    traj, _ = t.compute_advantages(t.collect(0), 0)
    schedule = t.scheduler.timesteps.tolist()
    assert traj.num_steps == 4
    orders = set()
    for mb in t.micro_batches(traj, 0, 0):
        assert mb.num_steps == 3  # timestep_fraction 1.0 of the 3 eligible steps
        for row in mb.timesteps.tolist():
            assert sorted(row, reverse=True) == schedule[:3]  # each of the first three once, never the last
            orders.add(tuple(row))
    if trainer == "ddpo":  # (D3PO's two pairs here happen to draw the same order)
        assert len(orders) > 1  # still shuffled per sample
    cfg.exclude_final_steps = 4  # refused at construction, before any sampling
    with pytest.raises(ValueError, match=r"exclude_final_steps=4 must be in \[0, sampling.num_inference_steps=4\)"):
        get_trainer_class(trainer)(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))


def test_step_gradient_scales_and_the_dominant_step_warning(tmp_path):
    adapter = adapter_for(build_tiny_pipeline("sd"))
    scheduler = adapter.sampling_scheduler(4)  # DDIM timesteps 751, 501, 251, 1 (1000 training steps)
    scales = step_gradient_scales(adapter, scheduler, 1.0)
    # by hand for the step 251 -> 1 (epsilon prediction): mean = sqrt(a1) x0 + sqrt(1 - a1 - s^2) eps with
    # x0 = (x - sqrt(1 - a251) eps) / sqrt(a251), so dmean/deps = sqrt(1 - a1 - s^2) - sqrt(a1 (1 - a251) / a251)
    a = scheduler.alphas_cumprod.double()
    a251, a1 = a[251], a[1]
    var = (1 - a1) / (1 - a251) * (1 - a251 / a1)
    expected = abs(float(((1 - a1 - var).sqrt() - (a1 * (1 - a251) / a251).sqrt()) / var.sqrt()))
    assert scales.shape == (4,) and math.isclose(float(scales[2]), expected, rel_tol=1e-4)
    assert float(scales[2]) > 5 * float(scales[[0, 1, 3]].max())  # the near-deterministic step dominates
    cfg = make_config(tmp_path, "ddpo", "sd", max_steps=1)
    with pytest.warns(UserWarning, match=r"sampling step 2 of 4 \(timestep 251\).*exclude_final_steps=2"):
        get_trainer_class("ddpo")(cfg, adapter=adapter)  # set-up, before any sampling
    cfg.exclude_final_steps = 2
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="sampling step")
        get_trainer_class("ddpo")(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))


def test_flow_grpo_window_stores_only_the_sde_steps(tmp_path):
    cfg = make_config(tmp_path, "flow_grpo", "sd3", sde_window_size=2, sde_window_range=[1, 4],
                      **{"sampling.noise_level": 0.7})
    trainer = get_trainer_class("flow_grpo")(cfg, adapter=adapter_for(build_tiny_pipeline("sd3")))
    levels, store = trainer.step_plan(0, 0)
    start = store.index(True)
    assert store == [start <= i < start + 2 for i in range(4)] and 1 <= start <= 2
    assert levels == [0.7 if s else 0.0 for s in store]
    traj = trainer.collect(0)
    assert traj.num_steps == 2 and traj.noise_level == 0.7
    schedule = trainer.scheduler.timesteps
    starts = {int((schedule == traj.timesteps[i, 0]).nonzero()) for i in range(len(traj))}
    assert starts <= {1, 2}
    assert (traj.log_probs != 0).all()


def test_flow_grpo_refuses_a_ddim_family(tmp_path):
    cfg = make_config(tmp_path, "flow_grpo", "sd")
    with pytest.raises(ValueError, match="rectified-flow"):
        get_trainer_class("flow_grpo")(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))


@pytest.mark.parametrize("trainer", ["alignprop", "draft", "refl"])
def test_reward_gradient_trainers_refuse_a_non_differentiable_reward(tmp_path, trainer):
    cfg = make_config(tmp_path, trainer, "sd", **{"reward.name": "shapes"})
    with pytest.raises(ValueError, match="needs a differentiable reward; reward 'shapes' is not"):
        get_trainer_class(trainer)(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))


@pytest.mark.parametrize("trainer,family", [("ddpo", "sd"), ("flow_grpo", "sd3")])
@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(tmp_path, trainer, family):
    def go(folder, steps, resume=None, checkpointing_steps=0):
        cfg = make_config(folder, trainer, family, max_steps=steps, resume=resume, checkpointing_steps=checkpointing_steps)
        if trainer == "ddpo":  # the same 4 prompts every step: the persistent tracker state matters
            cfg.tracker_min_count, cfg.prompts.shapes_rows = 2, 4
        t, _, rows = run(cfg, family)
        return rows, {k: v.detach().clone() for k, v in t.trainable_named_parameters().items()}, t

    full, full_weights, _ = go(tmp_path / "a", 3)
    go(tmp_path / "b", 1, checkpointing_steps=1)
    resumed, resumed_weights, t = go(tmp_path / "b", 3, resume="latest")
    assert [r["step"] for r in resumed] == [1, 2, 3]
    for a, b in zip(full, resumed):
        for key in ("reward_mean", "loss", "advantage_abs_mean", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
    for name in full_weights:
        torch.testing.assert_close(full_weights[name], resumed_weights[name], rtol=1e-6, atol=1e-9)
    if trainer == "flow_grpo":  # the saved LoRA holds the EMA weights, restored from extra.safetensors
        from safetensors.torch import load_file

        assert os.path.exists(tmp_path / "b" / "out" / "checkpoints" / "step-000001" / "extra.safetensors")
        saved = [load_file(str(tmp_path / f / "out" / "pytorch_lora_weights.safetensors")) for f in ("a", "b")]
        for key in saved[0]:
            torch.testing.assert_close(saved[0][key], saved[1][key], rtol=1e-6, atol=1e-9)
        trained = {k.split("transformer.", 1)[-1]: v for k, v in full_weights.items()}
        assert any(not torch.equal(v, trained[k.replace("transformer.", "", 1).replace(".weight", ".default.weight")])
                   for k, v in saved[0].items()
                   if k.replace("transformer.", "", 1).replace(".weight", ".default.weight") in trained)


@pytest.mark.slow
def test_lora_output_loads_into_plain_diffusers(tmp_path):
    cfg = make_config(tmp_path, "ddpo", "sd", max_steps=1)
    trainer, result, _ = run(cfg, "sd")
    pipe = build_tiny_pipeline("sd")
    pipe.load_lora_weights(os.path.dirname(result.lora_path))
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = trainer.adapter.encode_prompt(["a red circle"])["prompt_embeds"]
    t = torch.tensor([500])
    with torch.no_grad():
        ours = trainer.adapter.denoiser(x, t, encoder_hidden_states=cond).sample
        theirs = pipe.unet(x, t, encoder_hidden_states=cond).sample
        base = build_tiny_pipeline("sd").unet(x, t, encoder_hidden_states=cond).sample
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(theirs, base)
    # the checkpoint folder holds the same LoRA in diffusers' layout (as diffusers' training scripts do)
    checkpoint = build_tiny_pipeline("sd")
    checkpoint.load_lora_weights(os.path.join(cfg.output_dir, "checkpoints", "step-000001"))
    with torch.no_grad():
        from_checkpoint = checkpoint.unet(x, t, encoder_hidden_states=cond).sample
    torch.testing.assert_close(from_checkpoint, ours, rtol=1e-4, atol=1e-5)


def test_every_trainer_fills_in_the_one_template():
    """One loop (``Trainer.train``); every registered trainer implements ``step`` and none derives
    from another registered trainer."""
    from diffalign.train.trainer import Trainer

    names = ["offline", "ddpo", "d3po", "flow_grpo", "alignprop", "draft", "refl"]
    classes = {name: get_trainer_class(name) for name in names}
    for name, cls in classes.items():
        assert issubclass(cls, Trainer) and cls.train is Trainer.train, name
        assert cls.step is not Trainer.step, name
        others = [other for other_name, other in classes.items() if other_name != name and other is not cls]
        assert not any(issubclass(cls, other) for other in others), name


@pytest.mark.slow
def test_diffalign_train_runs_an_online_recipe(tmp_path):
    from diffalign.cli import main

    build_tiny_pipeline("sd").save_pretrained(str(tmp_path / "tiny-sd"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "trainer: ddpo\n"
        f"output_dir: {tmp_path / 'run'}\n"
        "max_steps: 1\nbatch_size: 2\nprogress_bar: false\n"
        f"model:\n  pretrained: {tmp_path / 'tiny-sd'}\n"
        "lora:\n  rank: 4\n"
        "prompts:\n  source: list\n  items: [a red circle, a blue square]\n"
        "sampling:\n  num_inference_steps: 3\n  batch_size: 2\n  guidance_scale: 2.0\n"
        "reward:\n  name: jpeg_compressibility\n"
    )
    assert main(["train", str(recipe), "loss.clip_range=0.001"]) == 0
    rows = read_metrics(str(tmp_path / "run" / "logs" / "metrics.jsonl"))
    assert rows[0]["step"] == 1 and os.path.exists(tmp_path / "run" / "pytorch_lora_weights.safetensors")


def test_every_shipped_online_recipe_parses():
    online = [r for r in list_recipes() if trainer_name(recipe_path(r)) != "offline"]
    assert {"sd15_ddpo_aesthetic", "sd15_ddpo_compressibility", "sd15_d3po_aesthetic", "sd15_alignprop_hps",
            "sd35m_flow_grpo_geneval", "sd35m_flow_grpo_pickscore"} <= set(online)
    for name in online:
        path = recipe_path(name)
        cfg = load_config(get_trainer_class(trainer_name(path)).config_class, path)
        assert cfg.trainer == trainer_name(path) and cfg.max_steps > 0
