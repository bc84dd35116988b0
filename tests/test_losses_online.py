"""PPO and D3PO per-transition losses against values worked out independently (plain python + math)."""
import math

import diffalign  # noqa: F401  (installs the torchvision shim before anything else)
import pytest
import torch

from diffalign.losses import d3po_loss, get_loss, ppo_loss


def logsig(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def t(values, dtype=torch.float32, grad=False):
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


# ----------------------------------------------------------------------------- PPO
def test_ppo_clipping_hand_values():
    eps = 0.2
    log_prob = [0.0, math.log(1.5), math.log(0.5), 5e-5, math.log(0.5)]
    adv = [1.0, 2.0, -3.0, 10.0, 1.0]
    # sample 0: r = 1,   A = 1:  max(-1, -1)                       = -1
    # sample 1: r = 1.5, A = 2:  max(-3, -2*1.2 = -2.4)            = -2.4  (clipped: no gradient)
    # sample 2: r = 0.5, A = -3: max(1.5, 3*0.8 = 2.4)             =  2.4  (clipped: no gradient)
    # sample 3: A clipped to 5, r = e^5e-5: -5 r both ways         = -5 r
    # sample 4: r = 0.5, A = 1:  max(-0.5, -0.8)                   = -0.5  (pessimistic unclipped term)
    r3 = math.exp(5e-5)
    expected = (-1.0 - 2.4 + 2.4 - 5 * r3 - 0.5) / 5
    lp = t(log_prob, grad=True)
    loss, stats = ppo_loss(lp, t([0.0] * 5), t(adv), clip_range=eps, adv_clip_max=5.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["approx_kl"] == pytest.approx(0.5 * sum(x * x for x in log_prob) / 5, rel=1e-5)
    assert stats["clipfrac"] == pytest.approx(3 / 5)  # samples 1, 2, 4 are outside [0.8, 1.2]
    assert stats["clipfrac_gt_one"] == pytest.approx(1 / 5)
    assert stats["clipfrac_lt_one"] == pytest.approx(2 / 5)
    assert stats["advantage_mean"] == pytest.approx((1 + 2 - 3 + 5 + 1) / 5)
    loss.backward()
    # d loss / d log_prob_i = -A_i * r_i / B where the unclipped branch is active, else 0
    expected_grad = [-1.0 / 5, 0.0, 0.0, -5 * r3 / 5, -1.0 * 0.5 / 5]
    assert lp.grad.tolist() == pytest.approx(expected_grad, rel=1e-5, abs=1e-9)


def test_ppo_on_policy_ratio_one_and_default_clip_range():
    adv = [0.5, -1.5, 7.0]
    loss, stats = ppo_loss(t([-1.2, -0.7, -3.0]), t([-1.2, -0.7, -3.0]), t(adv))
    assert loss.item() == pytest.approx(-(0.5 - 1.5 + 5.0) / 3, rel=1e-6)  # advantages clipped at ±5
    assert stats["approx_kl"] == 0.0 and stats["clipfrac"] == 0.0 and stats["ratio_mean"] == 1.0
    # default clip range 1e-4: a ratio of 1.001 is already clipped
    loss, stats = ppo_loss(t([math.log(1.001)]), t([0.0]), t([1.0]))
    assert stats["clipfrac"] == 1.0
    assert loss.item() == pytest.approx(-(1 + 1e-4), rel=1e-6)


def test_ppo_low_precision_and_detached_inputs():
    old, adv = t([0.0, 0.1], grad=True), t([1.0, -1.0], grad=True)
    lp = t([0.05, 0.0]).bfloat16().requires_grad_()
    loss, stats = ppo_loss(lp, old, adv, clip_range=0.2)
    r0, r1 = math.exp(float(torch.tensor(0.05).bfloat16())), math.exp(-0.1)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx((-r0 + r1) / 2, rel=1e-5)
    loss.backward()
    assert old.grad is None and adv.grad is None and lp.grad is not None


def test_ppo_validation():
    with pytest.raises(ValueError, match="log_prob.*advantages"):
        ppo_loss(t([0.0, 0.0]), t([0.0, 0.0]), t([1.0]))
    with pytest.raises(ValueError, match="clip_range"):
        ppo_loss(t([0.0]), t([0.0]), t([1.0]), clip_range=0.0)


# ----------------------------------------------------------------------------- D3PO
def _d3po_logit(lw, rw, ll, rl, beta, eps):
    """The released form, in ratio space: clamp(exp(Δ), 1-eps, 1+eps), then log."""
    rho_w = min(max(math.exp(lw - rw), 1 - eps), 1 + eps)
    rho_l = min(max(math.exp(ll - rl), 1 - eps), 1 + eps)
    return beta * math.log(rho_w) - beta * math.log(rho_l)


def test_d3po_hand_value_with_clamping():
    beta, eps = 0.1, 0.1
    lw, rw = [-1.0, 0.3], [-1.05, 0.0]   # log-ratios 0.05 (inside), 0.3 (clamped to log 1.1)
    ll, rl = [-2.0, 0.0], [-1.5, 0.02]   # log-ratios -0.5 (clamped to log 0.9), -0.02 (inside)
    logits = [_d3po_logit(lw[i], rw[i], ll[i], rl[i], beta, eps) for i in range(2)]
    assert logits[0] == pytest.approx(0.1 * 0.05 - 0.1 * math.log(0.9))
    expected = sum(-logsig(x) for x in logits) / 2
    w, l_ = t(lw, grad=True), t(ll, grad=True)
    ref_w = t(rw, grad=True)
    loss, stats = d3po_loss(w, ref_w, l_, t(rl), beta=beta, eps=eps)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["clampfrac_w"] == 0.5 and stats["clampfrac_l"] == 0.5
    assert stats["implicit_acc"] == 1.0
    assert stats["log_ratio_w"] == pytest.approx((0.05 + 0.3) / 2, rel=1e-5)
    loss.backward()
    # unclamped entries: d/dΔ -logsigmoid(x)/B = -(1 - sigmoid(x)) * beta / B for the winner, + for the loser
    s0 = 1 / (1 + math.exp(-logits[0]))
    s1 = 1 / (1 + math.exp(-logits[1]))
    assert w.grad.tolist() == pytest.approx([-(1 - s0) * beta / 2, 0.0], abs=1e-9, rel=1e-5)
    assert l_.grad.tolist() == pytest.approx([0.0, (1 - s1) * beta / 2], abs=1e-9, rel=1e-5)
    assert ref_w.grad is None


def test_d3po_starts_at_log2_and_validation():
    z = t([-0.3, -0.2, -0.1])
    loss, stats = d3po_loss(z, z, z, z)
    assert loss.item() == pytest.approx(math.log(2.0)) and stats["implicit_acc"] == 0.5
    loss16, _ = d3po_loss(z.half(), z.half(), (z + 0.01).half(), z.half())
    assert loss16.dtype == torch.float32
    with pytest.raises(ValueError, match="eps"):
        d3po_loss(z, z, z, z, eps=1.0)
    with pytest.raises(ValueError, match="log_prob_w.*ref_log_prob_l"):
        d3po_loss(z, z, z, z[:2])


def test_registry_online_entries():
    assert get_loss("ppo").fn is ppo_loss and get_loss("ddpo") is get_loss("ppo")
    assert not get_loss("ppo").needs_reference and get_loss("d3po").needs_reference
    assert get_loss("d3po").inputs == "transition_pair"
