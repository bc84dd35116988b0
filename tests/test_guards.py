"""Reward-hacking guards (RatioNorm, adaptive KL, per-reward advantages) and the gold reward."""
from __future__ import annotations

import math
import os

import pytest
import torch

from diffalign.losses import AdaptiveKLController, ratio_norm_log_ratio, step_reweight
from diffalign.train.online.advantages import group_advantages, per_reward_advantages


def gaussian_log_prob(x, mean, std):
    """Mean-over-elements Gaussian log-density (diffalign's / Flow-GRPO's convention)."""
    return (-((x - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)).flatten(1).mean(1)


def test_ratio_norm_by_hand():
    # std 0.5, dmean = (1, 1): bias mean(dmean^2) / (2 std^2) = 2; 0.5 * (0.3 + 2) = 1.15
    out = ratio_norm_log_ratio(torch.tensor([0.3]), torch.tensor([0.0]), torch.ones(1, 2), torch.zeros(1, 2), 0.5)
    assert out.tolist() == pytest.approx([1.15])


def test_step_reweight_by_hand():
    # GRPO-Guard's Flow-GRPO weight 1 / |dt| with |dt| averaged over the batch: mean(0.05, 0.15) = 0.1,
    # so a step loss of 0.2 becomes 2.0, and its gradient is 10 times larger
    loss = torch.tensor(0.2, requires_grad=True)
    out = step_reweight(loss, torch.tensor([-0.05, -0.15]))
    assert float(out) == pytest.approx(2.0)
    out.backward()
    assert float(loss.grad) == pytest.approx(10.0)
    assert float(step_reweight(torch.tensor(0.3), 0.25)) == pytest.approx(1.2)
    with pytest.raises(ValueError, match="non-zero"):
        step_reweight(torch.tensor(0.3), torch.zeros(2))


def test_flow_step_size_is_the_schedule_difference():
    from types import SimpleNamespace

    from diffalign.samplers import flow_step_size

    # a 3-step schedule sigma 1.0 -> 0.6 -> 0.3 -> 0: steps of 0.4, 0.3 and 0.3
    sched = SimpleNamespace(num_inference_steps=3, timesteps=torch.tensor([1000.0, 600.0, 300.0]),
                            sigmas=torch.tensor([1.0, 0.6, 0.3, 0.0]))
    x = torch.zeros(3, 1, 2, 2)
    assert flow_step_size(sched, torch.tensor([1000.0, 600.0, 300.0]), x).tolist() == pytest.approx([0.4, 0.3, 0.3])


def test_ratio_norm_removes_the_bias_and_the_step_scale():
    # x = old_mean + std * eps: the plain log-ratio is eps·dmean/std - mean(dmean^2)/(2 std^2); the
    # normalised one is mean(eps * dmean) whatever the std
    eps = torch.tensor([[1.0, 0.5]])
    dmean = torch.tensor([[0.2, 0.4]])
    old_mean = torch.tensor([[0.3, -0.1]])
    for std in (0.05, 0.5):
        x = old_mean + std * eps
        log_prob, old = gaussian_log_prob(x, old_mean + dmean, std), gaussian_log_prob(x, old_mean, std)
        plain = log_prob - old
        assert float(plain) == pytest.approx(float((eps * dmean).mean() / std - (dmean**2).mean() / (2 * std**2)), rel=1e-5)
        normed = ratio_norm_log_ratio(log_prob, old, old_mean + dmean, old_mean, torch.full((1, 1), std))
        assert normed.tolist() == pytest.approx([0.2], rel=1e-4)  # (1 * 0.2 + 0.5 * 0.4) / 2


def test_adaptive_kl_by_hand():
    c = AdaptiveKLController(beta=0.1, target=0.01, horizon=10)
    assert c.update(0.02) == pytest.approx(0.1 * 1.02)  # error clipped to +0.2
    assert c.update(0.011) == pytest.approx(0.1 * 1.02 * 1.01)  # error 0.1
    assert c.update(0.0) == pytest.approx(0.1 * 1.02 * 1.01 * 0.98)  # error clipped to -0.2
    restored = AdaptiveKLController(beta=1.0, target=0.01)
    restored.load_state_dict(c.state_dict())
    assert restored.beta == c.beta
    with pytest.raises(ValueError, match="target > 0"):
        AdaptiveKLController(0.1, 0.0)


def test_adaptive_kl_bounds():
    # a cap at the start value: the controller may loosen the KL but never tighten it past the start
    c = AdaptiveKLController(beta=0.05, target=0.01, horizon=2, beta_max=0.05)
    assert c.update(1.0) == pytest.approx(0.05)  # would be 0.05 * 1.1
    assert c.update(0.0) == pytest.approx(0.05 * 0.9)
    assert c.update(1.0) == pytest.approx(0.045 * 1.1)  # below the cap again
    assert c.update(1.0) == pytest.approx(0.05)
    floor = AdaptiveKLController(beta=0.05, target=0.01, horizon=2, beta_min=0.048)
    assert floor.update(0.0) == pytest.approx(0.048)
    assert AdaptiveKLController(beta=0.2, target=0.01, beta_max=0.1).beta == pytest.approx(0.1)
    with pytest.raises(ValueError, match="beta_min <= beta_max"):
        AdaptiveKLController(0.1, 0.01, beta_min=0.2, beta_max=0.1)


def test_per_reward_advantages_by_hand():
    prompts = ["a", "a", "b", "b"]
    r1, r2 = [1.0, 3.0, 0.0, 2.0], [100.0, 100.0, 0.0, 400.0]
    adv = per_reward_advantages(prompts, {"small": r1, "large": r2}, weights=[1.0, 0.5], global_std=False, eps=1e-12)
    # r1: groups (1, 3) and (0, 2) -> -1, 1, -1, 1; r2: group a has no spread -> 0, 0; group b -> -1, 1
    assert adv.tolist() == pytest.approx([-1.0, 1.0, -1.5, 1.5])
    matrix = torch.tensor([r1, r2]).T
    assert per_reward_advantages(prompts, matrix, [1.0, 0.5], global_std=False, eps=1e-12).tolist() == pytest.approx(adv.tolist())
    # normalising the weighted sum instead lets the large-scale reward decide group b alone
    summed = group_advantages(prompts, [a + 0.5 * b for a, b in zip(r1, r2)], global_std=False, eps=1e-12)
    assert summed.tolist() == pytest.approx([-1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="1 weights for 2 rewards"):
        per_reward_advantages(prompts, matrix, [1.0])


@pytest.mark.slow
def test_flow_grpo_with_guards_and_a_gold_reward(tmp_path):
    from test_train_online import make_config, run

    cfg = make_config(tmp_path, "flow_grpo", "sd3", max_steps=1)
    cfg.loss.ratio_norm, cfg.loss.target_kl, cfg.loss.beta, cfg.loss.kl_horizon = True, 1e-12, 0.04, 10.0
    cfg.loss.kl_beta_max = 0.0395  # caps the start value 0.04 (capping at updates: test_adaptive_kl_bounds)
    cfg.loss.step_reweight = True
    ev = cfg.evaluation
    ev.every_steps, ev.num_prompts, ev.batch_size = 1, 4, 4
    ev.gold_reward.name = "jpeg_incompressibility"  # the training reward is jpeg_compressibility = its negative
    cfg.save_format = "comfyui"
    trainer, result, rows = run(cfg, "sd3")
    evals = [r for r in rows if "eval_reward_mean" in r]
    assert len(evals) == 2 and all(r["gold_reward_mean"] == pytest.approx(-r["eval_reward_mean"]) for r in evals)
    # the first optimizer step measures KL 0 exactly (the LoRA starts with B = 0: policy = reference),
    # -20 % / horizon; every later one a KL above the tiny target, +20 % / horizon
    n = trainer.optimizer_steps_done
    assert n == 2
    assert trainer.kl_control.beta == pytest.approx(0.0395 * 0.98 * 1.02 ** (n - 1))
    trained = [r for r in rows if "kl_beta" in r]
    assert trained and trained[0]["kl_beta"] == pytest.approx(0.0395, rel=0.05)
    assert math.isfinite(trained[0]["loss"])
    assert all(r["step_weight"] > 1 for r in trained)  # 1 / |dt| with |dt| < 1
    # the final outputs: the diffusers LoRA, the save_format export and the model card with the gold curve
    out = result.output_dir
    assert os.path.isfile(os.path.join(out, "pytorch_lora_weights.safetensors"))
    from safetensors.torch import load_file

    assert all(k.startswith("transformer.") for k in load_file(os.path.join(out, "exports", "lora_comfyui.safetensors")))
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert "| gold_reward_mean | 0 |" in card and "library_name: diffusers" in card


def test_step_reweight_refuses_cps():
    from diffalign.train.online.config import FlowGRPOConfig
    from diffalign.train.online.flow_grpo import FlowGRPOTrainer

    cfg = FlowGRPOConfig()
    cfg.loss.step_reweight, cfg.sde_type = True, "cps"
    with pytest.raises(ValueError, match="step_reweight"):
        FlowGRPOTrainer(cfg)


def _brightness(images, prompts):
    return images.mean(dim=(1, 2, 3))


def _red(images, prompts):
    return 100.0 * images[:, 0].mean(dim=(1, 2))


def test_scorer_returns_the_components_of_a_combined_reward():
    from diffalign.rewards import as_reward
    from diffalign.train.online.scoring import RewardScorer, component_weights

    reward = as_reward({"bright": (_brightness, 1.0), "red": (_red, 0.5)})
    assert component_weights(reward) == {"bright": 1.0, "red": 0.5}
    images = torch.zeros(2, 3, 2, 2)
    images[0] = 0.5
    images[1, 0] = 0.3  # only the red channel: brightness 0.1, red 30
    scorer = RewardScorer(reward, workers=0)
    total, parts = scorer.submit(images, ["a", "b"], components=True).result()
    assert parts.flatten().tolist() == pytest.approx([0.5, 50.0, 0.1, 30.0])
    assert total.tolist() == pytest.approx([0.5 + 25.0, 0.1 + 15.0])
    assert scorer.submit(images, ["a", "b"]).result().tolist() == pytest.approx(total.tolist())
    with pytest.raises(ValueError, match="needs several rewards combined"):
        component_weights(as_reward(_brightness))


@pytest.mark.slow
@pytest.mark.parametrize("trainer_name,family", [("flow_grpo", "sd3"), ("ddpo", "sd")])
def test_per_reward_advantages_in_training(tmp_path, trainer_name, family):
    """Two rewards of very different scales: the advantages the trainer uses are the weighted sum of each
    component normalised on its own (not the normalised weighted sum), and each component is logged."""
    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.tiny import build_tiny_pipeline
    from diffalign.train import get_trainer_class
    from diffalign.train.metrics import read_metrics
    from diffalign.train.online.advantages import PerPromptStatTracker
    from test_train_online import make_config

    cfg = make_config(tmp_path, trainer_name, family, max_steps=2)
    cfg.advantages.per_reward = True
    if trainer_name == "ddpo":
        cfg.group_size, cfg.tracker_min_count = 2, 1
    cls = get_trainer_class(trainer_name)
    seen = []

    class Recording(cls):
        def compute_advantages(self, traj, step):
            comps, prompts = traj.reward_components.clone(), list(traj.prompts)
            traj, stats = super().compute_advantages(traj, step)
            seen.append((prompts, comps, traj.advantages.clone(), traj.rewards.clone()))
            return traj, stats

    reward = {"bright": (_brightness, 1.0), "red": (_red, 0.5)}
    trainer = Recording(cfg, adapter=adapter_for(build_tiny_pipeline(family)), reward=reward)
    result = trainer.train()
    rows = [r for r in read_metrics(result.metrics_path) if "reward_mean" in r]
    assert len(rows) == 2 and len(seen) == 2
    trackers = [PerPromptStatTracker(cfg.tracker_buffer_size, cfg.tracker_min_count) for _ in range(2)] \
        if trainer_name == "ddpo" else None
    for row, (prompts, comps, adv, total) in zip(rows, seen):
        assert row["reward_bright_mean"] == pytest.approx(float(comps[:, 0].mean()), rel=1e-5)
        assert row["reward_red_mean"] == pytest.approx(float(comps[:, 1].mean()), rel=1e-5)
        assert total.tolist() == pytest.approx((comps[:, 0] + 0.5 * comps[:, 1]).tolist(), rel=1e-5)
        if trainer_name == "flow_grpo":
            expect = sum(w * group_advantages(prompts, comps[:, k], True, cfg.advantage_eps) for k, w in enumerate((1.0, 0.5)))
            summed = group_advantages(prompts, total, True, cfg.advantage_eps)
            assert not torch.allclose(summed.float(), expect.float(), atol=1e-3)
        else:  # one stat tracker per component, persistent across iterations
            expect = trackers[0].update(prompts, comps[:, 0]) + 0.5 * trackers[1].update(prompts, comps[:, 1])
        assert adv.tolist() == pytest.approx(expect.tolist(), rel=1e-4, abs=1e-5)
    if trainer_name == "ddpo":
        state = trainer.checkpoint_state()["component_trackers"]
        assert [s["stats"] for s in state] == [t.state_dict()["stats"] for t in trackers]


def test_d3po_refuses_per_reward_advantages():
    from diffalign.train.online.config import D3POConfig
    from diffalign.train.online.d3po import D3POTrainer

    cfg = D3POConfig(output_dir="unused")
    cfg.advantages.per_reward = True
    with pytest.raises(ValueError, match="does not apply to D3PO"):
        D3POTrainer(cfg)
