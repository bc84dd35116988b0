"""A loss and an input layout added from outside the package train with the offline trainer on the
tiny SD model, without any edit to diffalign. The code registered is the snippets of docs/losses.md
("Add a loss", "Add an input layout"), run from this test module."""
from __future__ import annotations

import dataclasses
import functools
import math
import os

import diffalign  # noqa: F401  (compat shim first)
import numpy as np
import pytest
import torch

from diffalign.data import DataConfig, write_pairs_jsonl
from diffalign.losses import (
    INPUT_LAYOUTS,
    LOSSES,
    InputLayout,
    LossSpec,
    diffusion_dpo_loss,
    get_loss,
    register_input_layout,
    register_loss,
    sft_loss,
)
from diffalign.pipelines import adapter_for
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train.metrics import read_metrics
from diffalign.train.offline import CacheConfig, OfflineConfig, OfflinePreferenceTrainer

#: a loss an installed package would expose through the ``diffalign.losses`` entry-point group.
EP_SFT = LossSpec("ep_sft", sft_loss, "winner", False)
EP_WINNER = InputLayout("ep_winner", "the winners", "pairs", lambda adapter, batch, cond, generator, spec: {})
DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "losses.md")


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


def test_register_loss_adds_a_pure_function_with_its_input_spec(registries):
    @register_loss("half_dpo", inputs="pair", needs_reference=True, defaults={"beta": 10.0})
    def half_dpo(policy_w, policy_l, ref_w, ref_l, beta=1.0):
        """Half of Diffusion-DPO."""
        loss, stats = diffusion_dpo_loss(policy_w, policy_l, ref_w, ref_l, beta=beta)
        return loss / 2, stats

    assert half_dpo.__name__ == "half_dpo"  # the decorator returns the function itself
    spec = get_loss("half_dpo")
    assert (spec.fn, spec.inputs, spec.needs_reference, spec.conditioning) == (half_dpo, "pair", True, "shared")
    assert spec.summary == "Half of Diffusion-DPO." and spec.required == ("policy_w", "policy_l", "ref_w", "ref_l")
    pw, pl, rw, rl = (torch.tensor(v) for v in ([0.1, 0.2], [0.3, 0.1], [0.2, 0.2], [0.2, 0.2]))
    loss, _ = spec(pw, pl, rw, rl)  # default beta 10: u = -5 * [-0.2, 0.1] = [1, -0.5]
    assert loss.item() == pytest.approx((math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="already registered; pass override=True"):
        register_loss("half_dpo", half_dpo, inputs="pair", needs_reference=True)
    with pytest.raises(ValueError, match="already registered"):
        register_loss("diffusion_dpo", half_dpo, inputs="pair", needs_reference=True)
    with pytest.raises(ValueError, match=r"unknown inputs layout 'pairs'; choose one of: list, pair, "):
        register_loss("typo", half_dpo, inputs="pairs", needs_reference=True)
    with pytest.raises(ValueError, match=r"unknown conditioning 'own'; choose one of: shared, dual_caption"):
        register_loss("typo", half_dpo, inputs="pair", needs_reference=True, conditioning="own")
    with pytest.raises(ValueError, match=r"defaults \['gamma'\] are not arguments of half_dpo"):
        register_loss("typo", half_dpo, inputs="pair", needs_reference=True, defaults={"gamma": 1})
    with pytest.raises(TypeError, match="must be a LossSpec"):
        LOSSES.register("typo", half_dpo)
    with pytest.raises(ValueError, match="loss registered as 'typo' is named 'sft'"):
        LOSSES.register("typo", get_loss("sft"))
    assert "typo" not in LOSSES


def test_registries_read_their_entry_point_groups(registries, monkeypatch):
    from importlib import metadata

    points = {
        "diffalign.losses": [metadata.EntryPoint("ep_sft", f"{__name__}:EP_SFT", "diffalign.losses")],
        "diffalign.input_layouts": [
            metadata.EntryPoint("ep_winner", f"{__name__}:EP_WINNER", "diffalign.input_layouts")
        ],
    }
    monkeypatch.setattr(metadata, "entry_points", lambda group: points.get(group, []))
    monkeypatch.setattr(LOSSES, "_entry_points_read", False)
    monkeypatch.setattr(INPUT_LAYOUTS, "_entry_points_read", False)
    assert (LOSSES.entry_point_group, INPUT_LAYOUTS.entry_point_group) == ("diffalign.losses", "diffalign.input_layouts")
    assert get_loss("ep_sft") is EP_SFT and "ep_sft" in LOSSES.names()
    register_loss("sft_on_ep_winner", sft_loss, inputs="ep_winner", needs_reference=False)  # found on lookup
    assert INPUT_LAYOUTS.get("ep_winner") is EP_WINNER


def _docs_snippet(heading: str) -> str:
    """The first python block under ``## heading`` in docs/losses.md (the tests train what the docs show)."""
    with open(DOCS, encoding="utf-8") as f:
        section = f.read().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_a_loss_registered_outside_the_package_trains(tmp_path, pairs_dir, registries):
    exec(_docs_snippet("Add a loss"), {"__name__": "user_code"})
    spec = LOSSES.get("dpo_plus_sft")
    assert (spec.inputs, spec.needs_reference, dict(spec.defaults)) == ("pair", True, {"beta": 2000.0})
    calls = []

    @functools.wraps(spec.fn)  # same signature: the trainer reads the argument names from it
    def recording(**kwargs):
        calls.append(kwargs)
        return spec.fn(**kwargs)

    LOSSES.register("dpo_plus_sft", dataclasses.replace(spec, fn=recording), override=True)

    rows, moved = _train(tmp_path, pairs_dir, "dpo_plus_sft", sft_weight=2.0)
    assert [r["step"] for r in rows] == [1, 2, 3] and len(calls) == 3 and moved
    first = calls[0]
    assert first["beta"] == 2000.0 and first["sft_weight"] == 2.0  # registered default, recipe value
    assert all(first[k].shape == (2,) for k in ("policy_w", "policy_l", "ref_w", "ref_l"))
    assert first["policy_w"].requires_grad and not first["ref_w"].requires_grad
    # step 1: the LoRA starts at zero, so policy and reference errors are equal bit for bit and
    # u = 0: loss = log 2 + 2.0 * mean(policy_w)
    assert torch.equal(first["policy_w"], first["ref_w"]) and torch.equal(first["policy_l"], first["ref_l"])
    mean_pw = sum(first["policy_w"].tolist()) / 2
    assert rows[0]["policy_w_err"] == pytest.approx(mean_pw, rel=1e-6)
    assert rows[0]["loss"] == pytest.approx(math.log(2) + 2.0 * mean_pw, rel=1e-6)
    assert rows[0]["gap"] == 0.0
    assert not torch.equal(calls[-1]["policy_w"], calls[-1]["ref_w"])  # the policy has moved by step 3


def test_an_input_layout_registered_outside_the_package_trains(tmp_path, pairs_dir, registries):
    exec(_docs_snippet("Add an input layout"), {"__name__": "user_code"})
    layout = INPUT_LAYOUTS.get("winner_two_timesteps")
    assert layout.data_kind == "pairs" and LOSSES.get("two_timestep_sft").inputs == "winner_two_timesteps"
    seen = []

    def recording(adapter, batch, cond, generator, spec):
        state = generator.get_state()
        out = layout.errors(adapter, batch, cond, generator, spec)
        seen.append(dict(state=state, latents=batch["w"], cond=cond, out=out))
        return out

    INPUT_LAYOUTS.register("winner_two_timesteps", dataclasses.replace(layout, errors=recording), override=True)

    rows, moved = _train(tmp_path, pairs_dir, "two_timestep_sft")
    assert [r["step"] for r in rows] == [1, 2, 3] and len(seen) == 3 and moved
    # step 1 by hand with a fresh copy of the model (the LoRA starts at zero), replaying the step's
    # generator: noise ~ N(0, 1) then a timestep per sample, twice; noise the winner latents, run the
    # UNet, compare with SD's epsilon target (the noise), mean squared error per sample
    first, base = seen[0], adapter_for(build_tiny_pipeline("sd"))
    x, gen = first["latents"], torch.Generator().set_state(first["state"])
    hand = []
    for name in ("err_a", "err_b"):
        noise = torch.randn(x.shape, generator=gen)
        t = base.sample_timesteps(x.shape[0], gen)
        with torch.no_grad():
            pred = base.forward(base.add_noise(x, noise, t), t, first["cond"])
        hand.append(((pred - noise) ** 2).flatten(1).mean(1))
        torch.testing.assert_close(first["out"][name].detach(), hand[-1])
    assert not torch.equal(hand[0], hand[1])
    assert rows[0]["loss"] == pytest.approx((sum(hand[0].tolist()) + sum(hand[1].tolist())) / 4, rel=1e-6)


@pytest.mark.slow
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
