"""Building blocks of the online trainers against hand-computed values: the K-repeat prompt sampler
over simulated processes, DDPO's stat tracker, Flow-GRPO's group advantages and filter, the EMA
schedule, the reward-loss shapes, prompt sets, and the sampling chain's gradient checkpointing."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from diffalign.losses import reward_loss
from diffalign.pipelines.tiny import build_tiny_adapter
from diffalign.train.online.advantages import (
    PerPromptStatTracker,
    global_advantages,
    group_advantages,
    keep_nonzero,
    zero_std_ratio,
)
from diffalign.train.online.config import PromptsConfig
from diffalign.train.online.ema import ParameterEMA
from diffalign.train.online.grouping import KRepeatSampler
from diffalign.train.online.prompts import PromptSet
from diffalign.pipelines.sampling import Guidance, sample_chain


# --------------------------------------------------------------------------- K-repeat sampler
def test_k_repeat_groups_are_complete_across_two_processes():
    # 2 processes x 6 rollouts, groups of 4 -> 3 prompts per sampling batch, each exactly 4 times
    ranks = [KRepeatSampler(num_prompts=10, batch_size=6, group_size=4, num_processes=2, process_index=r, seed=7)
             for r in (0, 1)]
    for batch in range(5):
        assert ranks[0].global_indices(batch) == ranks[1].global_indices(batch)  # same list on every rank
        local = [ranks[r].indices(batch) for r in (0, 1)]
        assert all(len(x) == 6 for x in local)
        counts = Counter(local[0] + local[1])
        assert len(counts) == 3 and set(counts.values()) == {4}
    # a group really is spread over processes in some batch (the rewards must be gathered)
    spread = [set(ranks[0].indices(b)) & set(ranks[1].indices(b)) for b in range(5)]
    assert any(spread)
    # batches differ, and the draw is a pure function of (seed, batch number)
    assert ranks[0].global_indices(0) != ranks[0].global_indices(1)
    again = KRepeatSampler(10, 6, 4, 2, 1, seed=7)
    assert again.indices(3) == ranks[1].indices(3)


def test_k_repeat_sampler_rejects_bad_sizes():
    with pytest.raises(ValueError, match="must divide"):
        KRepeatSampler(10, batch_size=3, group_size=4, num_processes=1)
    with pytest.raises(ValueError, match="distinct prompts"):
        KRepeatSampler(2, batch_size=8, group_size=2, num_processes=1)


# --------------------------------------------------------------------------- advantages
def test_ddpo_stat_tracker_hand_values_and_persistence():
    tracker = PerPromptStatTracker(buffer_size=3, min_count=2)
    # first call: "a" has 2 rewards (>= min_count) -> its own stats; "b" has 1 -> batch stats
    adv = tracker.update(["a", "b", "a"], [1.0, 4.0, 3.0])
    batch_mean, batch_std = 8 / 3, float(np.std([1.0, 4.0, 3.0]))
    assert adv[0] == pytest.approx((1 - 2) / (1 + 1e-6))
    assert adv[2] == pytest.approx((3 - 2) / (1 + 1e-6))
    assert adv[1] == pytest.approx((4 - batch_mean) / (batch_std + 1e-6))
    # second call: "a" buffer keeps the last 3 (3, 5 after [1, 3] + [5] -> [1, 3, 5]); "b" now has 2
    adv = tracker.update(["a", "b"], [5.0, 0.0])
    assert list(tracker.stats["a"]) == [1.0, 3.0, 5.0]
    assert adv[0] == pytest.approx((5 - 3) / (float(np.std([1, 3, 5])) + 1e-6))
    assert adv[1] == pytest.approx((0 - 2) / (2 + 1e-6))
    # FIFO of 3 and an exact state round trip
    tracker.update(["a"], [7.0])
    assert list(tracker.stats["a"]) == [3.0, 5.0, 7.0]
    copy = PerPromptStatTracker()
    copy.load_state_dict(json.loads(json.dumps(tracker.state_dict())))
    assert torch.equal(copy.update(["a", "b"], [1.0, 2.0]), tracker.update(["a", "b"], [1.0, 2.0]))


def test_group_advantages_group_and_global_std_with_a_zero_variance_group():
    prompts = ["p", "q", "p", "q", "r", "r"]
    rewards = [1.0, 0.0, 3.0, 0.0, 2.0, 6.0]
    local = group_advantages(prompts, rewards, global_std=False, eps=1e-4)
    # p: mean 2, std 1 ; q: all equal -> 0 ; r: mean 4, std 2
    expected = [(1 - 2) / (1 + 1e-4), 0.0, (3 - 2) / (1 + 1e-4), 0.0, (2 - 4) / (2 + 1e-4), (6 - 4) / (2 + 1e-4)]
    assert local.tolist() == pytest.approx(expected)
    overall = float(np.std(rewards))
    glob = group_advantages(prompts, rewards, global_std=True, eps=1e-4)
    assert glob.tolist() == pytest.approx([-1 / (overall + 1e-4), 0, 1 / (overall + 1e-4), 0,
                                           -2 / (overall + 1e-4), 2 / (overall + 1e-4)])
    assert zero_std_ratio(prompts, rewards) == pytest.approx(1 / 3)
    plain = global_advantages(rewards)
    assert plain.tolist() == pytest.approx(((np.array(rewards) - np.mean(rewards)) / (overall + 1e-8)).tolist())


def test_keep_nonzero_drops_zero_advantages_and_keeps_a_multiple():
    adv = torch.tensor([0.5, 0.0, -0.5, 0.0, 0.0, 1.0, 0.0])
    keep = keep_nonzero(adv, multiple=2, generator=torch.Generator().manual_seed(0))
    assert keep[[0, 2, 5]].all()  # every non-zero sample stays
    assert int(keep.sum()) == 4  # 3 non-zero + 1 zero re-added to reach a multiple of 2
    all_zero = keep_nonzero(torch.zeros(4), multiple=2, generator=torch.Generator().manual_seed(0))
    assert int(all_zero.sum()) == 2  # never an empty micro-batch


# --------------------------------------------------------------------------- EMA
def test_ema_schedule_matches_flow_grpo_formula():
    p = torch.nn.Parameter(torch.zeros(2))
    ema = ParameterEMA([p], decay=0.9, update_interval=2)
    expected = torch.zeros(2)
    for k in range(6):
        with torch.no_grad():
            p.add_(1.0)
        ema.step([p], k)
        if (k + 1) % 2 == 0:
            d = min((1 + k) / (10 + k), 0.9)
            expected = expected + (1 - d) * (p.detach() - expected)
    torch.testing.assert_close(ema.shadow[0], expected)
    with ema.swapped_in([p]):
        torch.testing.assert_close(p.detach(), expected)
    assert torch.equal(p.detach(), torch.full((2,), 6.0))  # trained weights restored


# --------------------------------------------------------------------------- reward loss
def test_reward_loss_shapes():
    r = torch.tensor([1.0, 3.0], requires_grad=True)
    loss, stats = reward_loss(r, "negative", scale=0.5)
    assert float(loss.detach()) == pytest.approx(-1.0)
    loss, _ = reward_loss(r, "target_l1", target=2.0)
    assert float(loss.detach()) == pytest.approx(1.0)
    loss, stats = reward_loss(r, "hinge", target=2.0, scale=1e-3)
    assert float(loss.detach()) == pytest.approx(0.5e-3) and stats["hinge_active"] == 0.5
    loss.backward()
    assert r.grad.tolist() == pytest.approx([-0.5e-3, 0.0])  # no push above the target
    with pytest.raises(ValueError, match="target"):
        reward_loss(r, "hinge")


# --------------------------------------------------------------------------- prompts
def test_prompt_sets(tmp_path):
    shapes = PromptSet.from_config(PromptsConfig(shapes_rows=12), seed=0)
    assert len(shapes) == 12 and shapes.metadata([0])[0]["prompt"] == shapes.prompts([0])[0]
    assert Counter(r["tag"] for r in shapes.rows) == Counter({t: 2 for t in set(r["tag"] for r in shapes.rows)})
    held_out = PromptSet.from_config(PromptsConfig(), evaluation=True, num_rows=6)
    assert not set(held_out.prompts(range(6))) & {r["prompt"] for r in PromptSet.from_config(PromptsConfig(shapes_rows=0)).rows}
    (tmp_path / "p.txt").write_text("a cat\n\na dog\n")
    assert PromptSet.from_file(str(tmp_path / "p.txt")).prompts([0, 1]) == ["a cat", "a dog"]
    (tmp_path / "p.jsonl").write_text('{"prompt": "x", "tag": "t"}\nnot json\n')
    with pytest.raises(ValueError, match="p.jsonl:2"):
        PromptSet.from_file(str(tmp_path / "p.jsonl"))


# --------------------------------------------------------------------------- sampling chain
def _lora_grads(adapter, checkpoint: bool, grad_from: int) -> list[torch.Tensor]:
    adapter.denoiser.zero_grad(set_to_none=True)
    scheduler = adapter.sampling_scheduler(4)
    cond = adapter.encode_prompt(["a red circle", "a blue square"])
    guidance = Guidance(cond, adapter.encode_negative_prompt(None, 2), 3.0)
    x = adapter.initial_latents(2, 32, 32, generator=torch.Generator().manual_seed(0))
    chain = sample_chain(adapter, scheduler, x, guidance, [1.0] * 4, generator=torch.Generator().manual_seed(1),
                         grad_from=grad_from, checkpoint=checkpoint)
    adapter.decode_latents(chain.final).mean().backward()
    return [p.grad.clone() for p in adapter.trainable_parameters()]


def test_checkpointed_chain_gives_the_same_gradients_and_truncation_cuts_them():
    adapter = build_tiny_adapter("sd")
    adapter.add_lora(rank=4, init_lora_weights=False)  # non-zero B: every LoRA weight gets a gradient
    plain = _lora_grads(adapter, checkpoint=False, grad_from=1)
    ckpt = _lora_grads(adapter, checkpoint=True, grad_from=1)
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
    last_only = _lora_grads(adapter, checkpoint=True, grad_from=3)
    assert any(not torch.allclose(a, b) for a, b in zip(plain, last_only))  # fewer steps, other gradient
    assert sum(float(g.abs().sum()) for g in last_only) > 0
