"""A loss and an input layout added from outside the package (here, in this test module) train with
the offline trainer on the tiny SD model, without any edit to diffalign: what docs/losses.md shows."""
from __future__ import annotations

import math

import diffalign  # noqa: F401  (compat shim first)
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffalign.data import DataConfig, write_pairs_jsonl
from diffalign.losses import INPUT_LAYOUTS, LOSSES, register_input_layout, register_loss
from diffalign.pipelines import adapter_for
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train.metrics import read_metrics
from diffalign.train.offline import CacheConfig, OfflineConfig, OfflinePreferenceTrainer


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    image = lambda: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)  # noqa: E731
    write_pairs_jsonl(str(root), [{"caption": f"thing {i}", "jpg_0": image(), "jpg_1": image(), "label_0": 1.0}
                                  for i in range(4)])
    return root


@pytest.fixture
def registries():
    """Whatever a test registers is gone afterwards."""
    losses, layouts = set(LOSSES.names()), set(INPUT_LAYOUTS.names())
    yield
    for name in set(LOSSES.names()) - losses:
        LOSSES.unregister(name)
    for name in set(INPUT_LAYOUTS.names()) - layouts:
        INPUT_LAYOUTS.unregister(name)


def _train(tmp_path, pairs_dir, method, steps=3, **loss):
    cfg = OfflineConfig(output_dir=str(tmp_path / "out"), method=method, max_steps=steps, batch_size=2,
                        progress_bar=False, loss=loss, cache=CacheConfig(dir=str(tmp_path / "cache")),
                        data=DataConfig(path=str(pairs_dir), kind="pairs", resolution=32))
    cfg.lora.rank, cfg.optim.lr = 4, 1e-3
    adapter = adapter_for(build_tiny_pipeline("sd"))
    result = OfflinePreferenceTrainer(cfg, adapter=adapter).train()
    moved = any(p.abs().sum() > 0 for n, p in adapter.denoiser.named_parameters() if "lora_B" in n)  # zero at start
    return read_metrics(result.metrics_path), moved


def test_a_loss_registered_outside_the_package_trains(tmp_path, pairs_dir, registries):
    calls = []

    @register_loss("dpo_plus_sft", inputs="pair", needs_reference=True, defaults={"beta": 2000.0})
    def dpo_plus_sft(policy_w, policy_l, ref_w, ref_l, beta=1.0, sft_weight=0.5):
        """Diffusion-DPO plus a denoising term on the winners."""
        calls.append(dict(policy_w=policy_w, policy_l=policy_l, ref_w=ref_w, ref_l=ref_l, beta=beta))
        u = -0.5 * beta * ((policy_w - ref_w) - (policy_l - ref_l))
        loss = -F.logsigmoid(u).mean() + sft_weight * policy_w.mean()
        return loss, {"loss": loss.item(), "gap": u.mean().item()}

    rows, moved = _train(tmp_path, pairs_dir, "dpo_plus_sft", sft_weight=2.0)
    assert [r["step"] for r in rows] == [1, 2, 3] and len(calls) == 3 and moved
    first = calls[0]
    assert first["beta"] == 2000.0  # the registered default reaches the function
    assert all(first[k].shape == (2,) for k in ("policy_w", "policy_l", "ref_w", "ref_l"))
    assert first["policy_w"].requires_grad and not first["ref_w"].requires_grad
    # step 1: the LoRA starts at zero, so policy and reference errors are equal bit for bit and
    # u = 0: loss = log 2 + 2.0 * mean(policy_w)
    assert torch.equal(first["policy_w"], first["ref_w"]) and torch.equal(first["policy_l"], first["ref_l"])
    pw = first["policy_w"].tolist()
    assert rows[0]["loss"] == pytest.approx(math.log(2) + 2.0 * sum(pw) / 2, rel=1e-6)
    assert rows[0]["gap"] == 0.0
    assert not torch.equal(calls[-1]["policy_w"], calls[-1]["ref_w"])  # the policy has moved by step 3


def test_an_input_layout_registered_outside_the_package_trains(tmp_path, pairs_dir, registries):
    seen = []

    @register_input_layout("winner_two_timesteps", data_kind="pairs")
    def winner_two_timesteps(adapter, batch, cond, generator, spec):
        """The winner's error at two independent noise draws and timesteps."""
        draws = [adapter.training_errors(batch["w"], cond, generator=generator) for _ in range(2)]
        seen.append(dict(latents=batch["w"], cond=cond, draws=draws))
        return {"err_a": draws[0][0], "err_b": draws[1][0]}

    @register_loss("two_timestep_sft", inputs="winner_two_timesteps", needs_reference=False)
    def two_timestep_sft(err_a, err_b):
        loss = (err_a.mean() + err_b.mean()) / 2
        return loss, {"loss": loss.item()}

    assert INPUT_LAYOUTS.get("winner_two_timesteps").data_kind == "pairs"
    rows, moved = _train(tmp_path, pairs_dir, "two_timestep_sft")
    assert [r["step"] for r in rows] == [1, 2, 3] and len(seen) == 3 and moved
    # step 1 by hand with a fresh copy of the model (the LoRA starts at zero): noise the winner
    # latents, run the UNet, compare with the epsilon target, mean squared error per sample
    first, base = seen[0], adapter_for(build_tiny_pipeline("sd"))
    x, hand = first["latents"], []
    for errors, parts in first["draws"]:
        noise, t = parts["noise"], parts["timesteps"]
        with torch.no_grad():
            pred = base.forward(base.add_noise(x, noise, t), t, first["cond"])
        hand.append(((pred - noise) ** 2).flatten(1).mean(1))  # SD's target is the noise (epsilon)
        torch.testing.assert_close(errors.detach(), hand[-1])
    assert not torch.equal(first["draws"][0][1]["timesteps"], first["draws"][1][1]["timesteps"])
    assert rows[0]["loss"] == pytest.approx((sum(hand[0].tolist()) + sum(hand[1].tolist())) / 4, rel=1e-6)


def test_a_loss_and_layout_that_do_not_fit_give_one_line_errors(tmp_path, pairs_dir, registries):
    @register_loss("needs_margin", inputs="pair", needs_reference=False)
    def needs_margin(policy_w, policy_l, margin):
        return (policy_w - policy_l + margin).mean(), {}

    with pytest.raises(ValueError, match=r"loss needs_margin takes \['margin'\] that input layout 'pair' does not give"):
        _train(tmp_path / "a", pairs_dir, "needs_margin")
    with pytest.raises(ValueError, match=r"loss.marge: not an argument of needs_margin"):
        _train(tmp_path / "b", pairs_dir, "needs_margin", marge=1.0)
    rows, _ = _train(tmp_path / "c", pairs_dir, "needs_margin", steps=1, margin=1.0)  # given in the config
    assert len(rows) == 1

    register_input_layout("ranked_only", lambda *args: {}, data_kind="ranked")
    register_loss("on_ranked", needs_margin, inputs="ranked_only", needs_reference=False)
    with pytest.raises(ValueError, match="method on_ranked trains on data.kind=ranked, but data.kind=pairs"):
        _train(tmp_path / "d", pairs_dir, "on_ranked")
