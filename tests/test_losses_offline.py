"""Offline preference losses against values worked out independently (plain python + math)."""
import math

import diffalign  # noqa: F401  (installs the torchvision shim before anything else)
import pytest
import torch

from diffalign.losses import (
    INPUT_LAYOUTS,
    LOSSES,
    dense_dpo_loss,
    diffusion_dpo_loss,
    dspo_loss,
    flow_dpo_loss,
    get_loss,
    kto_loss,
    mapo_loss,
    rankdpo_loss,
    sft_loss,
    smpo_loss,
)


def logsig(x):
    """log(sigmoid(x)) in plain python, stable for both signs."""
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def t(values, dtype=torch.float32, grad=False):
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


# Two pairs, beta = 10 (hand arithmetic):
#   pair 0: (pw - rw) - (pl - rl) = (0.1 - 0.2) - (0.3 - 0.2) = -0.2  -> u = -5 * -0.2 = +1.0
#   pair 1: (0.2 - 0.2) - (0.1 - 0.2) = +0.1                          -> u = -5 *  0.1 = -0.5
PW, PL, RW, RL = [0.1, 0.2], [0.3, 0.1], [0.2, 0.2], [0.2, 0.2]
U = [1.0, -0.5]


# ----------------------------------------------------------------------------- Diffusion-DPO
def test_dpo_sigmoid_hand_value_and_stats():
    loss, stats = diffusion_dpo_loss(t(PW), t(PL), t(RW), t(RL), beta=10.0)
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 2  # 0.31326 and 0.97408
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert loss.ndim == 0 and loss.dtype == torch.float32
    assert all(type(v) is float for v in stats.values())
    assert stats["loss"] == pytest.approx(expected, rel=1e-6)
    assert stats["implicit_acc"] == 0.5  # one u > 0, one u < 0
    assert stats["inside_term"] == pytest.approx(0.25, abs=1e-6)
    assert stats["policy_w_err"] == pytest.approx(0.15)
    assert stats["policy_l_err"] == pytest.approx(0.2)
    assert stats["ref_w_err"] == pytest.approx(0.2)
    assert stats["ref_l_err"] == pytest.approx(0.2)
    assert stats["policy_minus_ref_w"] == pytest.approx(-0.05, abs=1e-7)
    assert stats["policy_minus_ref_l"] == pytest.approx(0.0, abs=1e-7)


def test_dpo_hinge_hand_value():
    loss, stats = diffusion_dpo_loss(t(PW), t(PL), t(RW), t(RL), beta=10.0, kind="hinge")
    # relu(1 - 1.0) = 0, relu(1 + 0.5) = 1.5
    assert loss.item() == pytest.approx(0.75, rel=1e-6)
    assert stats["implicit_acc"] == 0.5


def test_dpo_beta_matches_diffusers_convention():
    # diffusers' SD script: -logsigmoid(beta' * (Δref - Δθ)) with beta' = 2500 ≙ 5000 here.
    pw, pl, rw, rl = [0.1001, 0.2], [0.1003, 0.2002], [0.1002, 0.2001], [0.1002, 0.2]
    expected = sum(
        -logsig(2500.0 * ((rw[i] - rl[i]) - (pw[i] - pl[i]))) for i in range(2)
    ) / 2
    loss, _ = diffusion_dpo_loss(t(pw, torch.float64), t(pl, torch.float64), t(rw, torch.float64), t(rl, torch.float64))
    assert loss.item() == pytest.approx(expected, rel=1e-3)


def test_dpo_ties_count_half_and_init_is_log2():
    # u = +1, u = 0 (policy == ref), u = -0.5  -> accuracy (1 + 0.5 + 0) / 3
    errors = [[0.1, 0.4, 0.2], [0.3, 0.5, 0.1], [0.2, 0.4, 0.2], [0.2, 0.5, 0.2]]
    loss, stats = diffusion_dpo_loss(*[t(e) for e in errors], beta=10.0)
    assert stats["implicit_acc"] == pytest.approx(0.5)
    same = t([0.3, 0.7, 0.2])
    loss, stats = diffusion_dpo_loss(same, same.flip(0), same, same.flip(0))
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert stats["implicit_acc"] == 0.5
    hinge, _ = diffusion_dpo_loss(same, same.flip(0), same, same.flip(0), kind="hinge")
    assert hinge.item() == pytest.approx(1.0)


def test_dpo_gradient_pushes_winner_error_down_and_loser_up():
    pw, pl = t(PW, grad=True), t(PL, grad=True)
    rw, rl = t(RW, grad=True), t(RL, grad=True)
    loss, _ = diffusion_dpo_loss(pw, pl, rw, rl, beta=10.0)
    loss.backward()
    # d/d pw of -logsigmoid(u)/B with du/dpw = -beta/2: (1 - sigmoid(u)) * beta/2 / B > 0
    expected = [(1 - sig(u)) * 5.0 / 2 for u in U]
    assert pw.grad.tolist() == pytest.approx(expected, rel=1e-5)
    assert pl.grad.tolist() == pytest.approx([-g for g in expected], rel=1e-5)
    assert (pw.grad > 0).all() and (pl.grad < 0).all()  # descent lowers winner error, raises loser error
    assert rw.grad is None and rl.grad is None  # reference is detached


def test_dpo_low_precision_inputs_computed_in_fp32():
    # u = -2500 * 30 = -75000: overflows fp16 (max 65504) but not fp32; loss = -logsigmoid(u) = 75000.
    args = [t([30.0]), t([0.0]), t([0.0]), t([0.0])]
    loss16, _ = diffusion_dpo_loss(*[a.half() for a in args])
    assert loss16.dtype == torch.float32
    assert loss16.item() == pytest.approx(75000.0, rel=1e-6)
    values = [[0.1, 0.25], [0.3, 0.125], [0.2, 0.375], [0.2, 0.5]]
    bf = [t(v).bfloat16() for v in values]
    loss_bf, _ = diffusion_dpo_loss(*bf, beta=7.0)
    loss_ref, _ = diffusion_dpo_loss(*[b.float() for b in bf], beta=7.0)
    assert loss_bf.dtype == torch.float32 and loss_bf.item() == loss_ref.item()


def test_dpo_validation_errors():
    with pytest.raises(ValueError, match="policy_w.*ref_l"):
        diffusion_dpo_loss(t(PW), t(PL), t(RW), t([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="kind"):
        diffusion_dpo_loss(t(PW), t(PL), t(RW), t(RL), kind="ipo")
    with pytest.raises(ValueError, match="1 dimension"):
        diffusion_dpo_loss(t([PW]), t([PL]), t([RW]), t([RL]))
    with pytest.raises(TypeError, match="floating"):
        diffusion_dpo_loss(torch.tensor([1, 2]), t(PL), t(RW), t(RL))
    with pytest.raises(ValueError, match="beta"):
        diffusion_dpo_loss(t(PW), t(PL), t(RW), t(RL), beta=0.0)
    with pytest.raises(TypeError, match="policy_l"):
        diffusion_dpo_loss(t(PW), [0.3, 0.1], t(RW), t(RL))


# ----------------------------------------------------------------------------- Flow-DPO
def test_flow_dpo_is_dpo_with_constant_beta_100():
    pw, pl, rw, rl = [1.02, 0.9], [1.0, 0.95], [1.0, 0.92], [1.01, 0.93]
    # beta = 100, u = -50 * ((pw - rw) - (pl - rl)):  pair 0: -50*(0.02+0.01) = -1.5; pair 1: -50*(-0.02-0.02) = 2.0
    expected = (-logsig(-1.5) - logsig(2.0)) / 2
    loss, stats = flow_dpo_loss(t(pw), t(pl), t(rw), t(rl))
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert stats["implicit_acc"] == 0.5


# ----------------------------------------------------------------------------- MaPO
def test_mapo_hand_computation():
    s, T, beta = 0.5, 1000, 0.1
    pw, pl = [0.2, 0.4, 0.05], [0.3, 0.35, 0.05]

    def f(m):
        return s * m / (math.exp(s * m) - 1.0)

    ratios = [logsig(T * (f(pw[i]) - f(pl[i]))) for i in range(3)]
    expected = sum(pw) / 3 - beta * sum(ratios) / 3
    loss, stats = mapo_loss(t(pw, torch.float64), t(pl, torch.float64))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["win_score"] == pytest.approx(sum(f(m) for m in pw) / 3, rel=1e-6)
    assert stats["lose_score"] == pytest.approx(sum(f(m) for m in pl) / 3, rel=1e-6)
    assert stats["margin_loss"] == pytest.approx(-beta * sum(ratios) / 3, rel=1e-5)
    assert stats["margin_acc"] == pytest.approx((1 + 0 + 0.5) / 3)  # win, lose, tie
    assert "ref_w_err" not in stats


def test_mapo_other_hyperparameters_and_zero_error():
    s, T, beta = 0.8, 50, 0.3
    f = lambda m: s * m / (math.exp(s * m) - 1.0)  # noqa: E731
    expected = 0.6 - beta * logsig(T * (f(0.6) - f(0.9)))
    loss, _ = mapo_loss(t([0.6]), t([0.9]), beta=beta, snr_value=s, num_train_timesteps=T)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # m = 0: f takes its limit 1; loss and gradient stay finite.
    pw = t([0.0], grad=True)
    loss, stats = mapo_loss(pw, t([0.2]))
    loss.backward()
    assert stats["win_score"] == 1.0
    assert torch.isfinite(loss) and torch.isfinite(pw.grad).all()


def test_mapo_gradient_directions_and_validation():
    pw, pl = t([0.3, 0.2], grad=True), t([0.25, 0.22], grad=True)
    loss, _ = mapo_loss(pw, pl)
    loss.backward()
    assert (pw.grad > 0).all() and (pl.grad < 0).all()
    with pytest.raises(ValueError, match="snr_value"):
        mapo_loss(t([0.1]), t([0.2]), snr_value=0.0)
    with pytest.raises(ValueError, match="num_train_timesteps"):
        mapo_loss(t([0.1]), t([0.2]), num_train_timesteps=0)
    with pytest.raises(ValueError, match="policy_w.*policy_l"):
        mapo_loss(t([0.1]), t([0.2, 0.3]))


# ----------------------------------------------------------------------------- SmPO
def test_smpo_hand_value():
    # beta = 10, gamma = 10; p = 0.8 -> scale 6, p = 0.6 -> scale 2; DPO u per pair = U = [1.0, -0.5]
    loss, stats = smpo_loss(t(PW), t(PL), t(RW), t(RL), t([0.8, 0.6]), beta=10.0, gamma=10.0)
    expected = (-logsig(6.0 * 1.0) - logsig(2.0 * -0.5)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["label_scale_mean"] == pytest.approx(4.0, rel=1e-6)
    assert stats["soft_label_mean"] == pytest.approx(0.7, rel=1e-6)
    assert stats["implicit_acc"] == 0.5


def test_smpo_neutral_label_gives_no_gradient_and_p1_gamma1_is_dpo():
    pw, pl = t(PW, grad=True), t(PL, grad=True)
    loss, stats = smpo_loss(pw, pl, t(RW), t(RL), t([0.5, 0.5]), beta=10.0)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2.0))
    assert pw.grad.abs().max().item() == 0.0 and pl.grad.abs().max().item() == 0.0
    smpo, _ = smpo_loss(t(PW), t(PL), t(RW), t(RL), t([1.0, 1.0]), beta=10.0, gamma=1.0)
    dpo, _ = diffusion_dpo_loss(t(PW), t(PL), t(RW), t(RL), beta=10.0)
    assert smpo.item() == pytest.approx(dpo.item(), rel=1e-6)


def test_smpo_validation():
    with pytest.raises(ValueError, match=r"soft_label must lie in \[0, 1\]"):
        smpo_loss(t(PW), t(PL), t(RW), t(RL), t([0.5, 1.2]))
    with pytest.raises(ValueError, match="soft_label"):
        smpo_loss(t(PW), t(PL), t(RW), t(RL), t([0.5]))
    with pytest.raises(ValueError, match="gamma"):
        smpo_loss(t(PW), t(PL), t(RW), t(RL), t([0.5, 0.7]), gamma=-1.0)


# ----------------------------------------------------------------------------- KTO
def test_kto_hand_value_and_detached_reference_point():
    policy, ref, desirable, beta = [0.1, 0.25, 0.2], [0.2, 0.2, 0.2], [True, False, True], 10.0
    g = [ref[i] - policy[i] for i in range(3)]  # 0.1, -0.05, 0.0
    z = max(0.0, sum(g) / 3)  # 0.016667
    y = [1.0 if d else -1.0 for d in desirable]
    margins = [y[i] * beta * (g[i] - z) for i in range(3)]
    expected = sum(1.0 - sig(m) for m in margins) / 3
    p = t(policy, grad=True)
    loss, stats = kto_loss(p, t(ref), torch.tensor(desirable), beta=beta)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["reference_point"] == pytest.approx(z, rel=1e-5)
    assert stats["implicit_acc"] == pytest.approx(2 / 3)  # margins 0.83, 0.67, -0.17
    assert stats["num_desirable"] == 2.0 and stats["num_undesirable"] == 1.0
    assert stats["log_ratio_desirable"] == pytest.approx(0.05, rel=1e-5)
    assert stats["log_ratio_undesirable"] == pytest.approx(-0.05, rel=1e-5)
    loss.backward()
    # With z constant: d/dpolicy_i (1 - sigmoid(m_i))/3 = sigmoid(m_i)(1 - sigmoid(m_i)) * y_i * beta / 3.
    # A non-detached z would add a term shared by every sample (z depends on all policies).
    expected_grad = [sig(m) * (1 - sig(m)) * y[i] * beta / 3 for i, m in enumerate(margins)]
    assert p.grad.tolist() == pytest.approx(expected_grad, rel=1e-4)
    assert p.grad[0] > 0 and p.grad[1] < 0  # desirable error pushed down, undesirable up


def test_kto_reference_point_clamped_at_zero_and_override():
    # g = ref - policy = [-0.1, -0.2]: mean < 0 -> z = 0
    loss, stats = kto_loss(t([0.3, 0.4]), t([0.2, 0.2]), torch.tensor([1, 0]), beta=5.0)
    expected = ((1 - sig(5.0 * -0.1)) + (1 - sig(-5.0 * -0.2))) / 2
    assert stats["reference_point"] == 0.0
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss, stats = kto_loss(t([0.3, 0.4]), t([0.2, 0.2]), torch.tensor([1, 0]), beta=5.0, reference_point=0.05)
    expected = ((1 - sig(5.0 * (-0.1 - 0.05))) + (1 - sig(-5.0 * (-0.2 - 0.05)))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_kto_validation():
    with pytest.raises(TypeError, match="desirable"):
        kto_loss(t([0.1]), t([0.2]), t([1.0]))
    with pytest.raises(ValueError, match="desirable"):
        kto_loss(t([0.1, 0.2]), t([0.2, 0.2]), torch.tensor([True]))
    with pytest.raises(ValueError, match="0/1"):
        kto_loss(t([0.1, 0.2]), t([0.2, 0.2]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="policy.*ref"):
        kto_loss(t([0.1, 0.2]), t([0.2]), torch.tensor([True, False]))


# ----------------------------------------------------------------------------- DenseDPO
def _dense_u(beta, label, p0, p1, r0, r1):
    return -(beta / 2) * label * ((p0 - r0) - (p1 - r1))


def test_dense_dpo_hand_value_with_ties_and_all_tie_pair():
    beta = 10.0
    p0 = [[0.1, 0.5, 0.3], [0.2, 0.2, 0.2], [0.3, 0.1, 0.2]]
    p1 = [[0.2, 0.5, 0.1], [0.1, 0.3, 0.2], [0.2, 0.2, 0.4]]
    r0 = [[0.2, 0.4, 0.2], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2]]
    r1 = [[0.2, 0.4, 0.2], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2]]
    labels = [[1, 0, -1], [0, 0, 0], [1, 1, 1]]
    per_pair = []
    for b in range(3):
        terms = [
            -logsig(_dense_u(beta, labels[b][s], p0[b][s], p1[b][s], r0[b][s], r1[b][s]))
            for s in range(3)
            if labels[b][s] != 0
        ]
        if terms:
            per_pair.append(sum(terms) / len(terms))
    expected = sum(per_pair) / len(per_pair)  # pair 1 (all ties) is left out
    # Pooling all 5 non-tie segments would give a different number; the per-pair average is the spec.
    pooled = (per_pair[0] * 2 + per_pair[1] * 3) / 5
    assert abs(expected - pooled) > 1e-3
    tp0 = t(p0, grad=True)
    loss, stats = dense_dpo_loss(tp0, t(p1), t(r0), t(r1), torch.tensor(labels), beta=beta)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["pairs_with_signal"] == 2.0
    assert stats["non_tie_fraction"] == pytest.approx(5 / 9)
    loss.backward()
    assert tp0.grad[1].abs().max().item() == 0.0  # all-tie pair: no gradient
    assert tp0.grad[0, 1].item() == 0.0  # tie segment: no gradient
    assert tp0.grad[0, 0] > 0 and tp0.grad[0, 2] < 0  # video 0 wins seg 0 (error down), loses seg 2 (error up)


def test_dense_dpo_batch_without_any_labelled_segment_is_zero_with_graph():
    p0 = t([[0.1, 0.2]], grad=True)
    ties = torch.zeros(1, 2, dtype=torch.long)
    loss, stats = dense_dpo_loss(p0, t([[0.3, 0.1]]), t([[0.2, 0.2]]), t([[0.2, 0.2]]), ties)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert p0.grad is not None and p0.grad.abs().max().item() == 0.0
    assert stats["pairs_with_signal"] == 0.0 and stats["implicit_acc"] == 0.5


def test_dense_dpo_validation():
    e = t([[0.1, 0.2]])
    with pytest.raises(ValueError, match=r"\+1.*-1.*0"):
        dense_dpo_loss(e, e, e, e, torch.tensor([[2, 0]]))
    with pytest.raises(ValueError, match="segment_labels"):
        dense_dpo_loss(e, e, e, e, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="2 dimension"):
        dense_dpo_loss(t([0.1]), t([0.1]), t([0.1]), t([0.1]), torch.tensor([1]))
    with pytest.raises(ValueError, match="policy_0.*ref_1"):
        dense_dpo_loss(e, e, e, t([[0.1, 0.2, 0.3]]), torch.tensor([[1, 0]]))


# ----------------------------------------------------------------------------- DSPO
def _mean(xs):
    return sum(xs) / len(xs)


def _dspo_reference(pred_w, ref_pred, target, pl, rl, beta, branch, threshold=0.1):
    """Plain-python DSPO for lists of per-pair element lists."""
    B = len(pred_w)
    pw = [_mean([(pred_w[b][k] - target[b][k]) ** 2 for k in range(len(target[b]))]) for b in range(B)]
    rw = [_mean([(ref_pred[b][k] - target[b][k]) ** 2 for k in range(len(target[b]))]) for b in range(B)]
    u = [-(beta / 2) * ((pw[b] - rw[b]) - (pl[b] - rl[b])) for b in range(B)]
    w = [1 - sig(x) for x in u]
    gaps = [[pred_w[b][k] - ref_pred[b][k] for k in range(len(target[b]))] for b in range(B)]
    if branch == "sd15":
        per = [
            _mean([((pred_w[b][k] - target[b][k]) - beta * w[b] * gaps[b][k]) ** 2 for k in range(len(target[b]))])
            for b in range(B)
        ]
        return _mean(per), False
    G = _mean([_mean([g * g for g in gaps[b]]) for b in range(B)])
    if G >= threshold:
        return _mean([_mean([(w[b] * g) ** 2 for g in gaps[b]]) for b in range(B)]), True
    return _mean([x * x for x in w]), False


PRED = [[0.5, -0.2, 0.1, 0.0], [0.3, 0.4, -0.1, 0.2]]
REF = [[0.45, -0.1, 0.1, 0.05], [0.3, 0.2, 0.0, 0.2]]
TGT = [[0.4, 0.0, 0.2, -0.1], [0.1, 0.5, 0.0, 0.1]]
DPL, DRL = [0.3, 0.2], [0.25, 0.22]


@pytest.mark.parametrize("beta", [2.0, 0.001])
def test_dspo_sd15_branch_hand_value(beta):
    expected, _ = _dspo_reference(PRED, REF, TGT, DPL, DRL, beta, "sd15")
    loss, stats = dspo_loss(t(PRED), t(REF), t(TGT), t(DPL), t(DRL), beta=beta, branch="sd15")
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["gap_gate_open"] == 0.0


def test_dspo_sd15_default_beta_and_4d_latents():
    pred = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    ref, tgt = pred * 0.9, torch.zeros_like(pred)
    default, _ = dspo_loss(pred, ref, tgt, t(DPL), t(DRL))
    flat = [x.reshape(2, -1) for x in (pred, ref, tgt)]
    explicit, _ = dspo_loss(*flat, t(DPL), t(DRL), beta=0.001, branch="sd15")
    assert default.item() == pytest.approx(explicit.item(), rel=1e-6)
    expected, _ = _dspo_reference(*[x.tolist() for x in flat], DPL, DRL, 0.001, "sd15")
    assert default.item() == pytest.approx(expected, rel=1e-5)


def test_dspo_sdxl_branch_both_forms():
    beta = 20.0
    # mean squared gap here: ((.05²+.1²+0+.05²) + (0+.2²+.1²+0)) / 8 = 0.008125
    closed, gate = _dspo_reference(PRED, REF, TGT, DPL, DRL, beta, "sdxl", threshold=0.1)
    assert gate is False
    loss, stats = dspo_loss(t(PRED), t(REF), t(TGT), t(DPL), t(DRL), beta=beta, branch="sdxl")
    assert loss.item() == pytest.approx(closed, rel=1e-5)
    assert stats["gap_gate_open"] == 0.0 and stats["score_gap"] == pytest.approx(0.008125, rel=1e-5)
    opened, gate = _dspo_reference(PRED, REF, TGT, DPL, DRL, beta, "sdxl", threshold=0.005)
    assert gate is True
    loss, stats = dspo_loss(t(PRED), t(REF), t(TGT), t(DPL), t(DRL), beta=beta, branch="sdxl", gap_threshold=0.005)
    assert loss.item() == pytest.approx(opened, rel=1e-5)
    assert stats["gap_gate_open"] == 1.0


def test_dspo_gradients_flow_through_weight_and_reference_is_detached():
    pred, ref, pl = t(PRED, grad=True), t(REF, grad=True), t(DPL, grad=True)
    loss, _ = dspo_loss(pred, ref, t(TGT), pl, t(DRL), beta=20.0, branch="sdxl")  # gate closed: mean((1-σ(u))²)
    loss.backward()
    # d/du (1 - σ(u))² < 0 and du/d policy_l = +beta/2 > 0: the loser's error is pushed up
    assert (pl.grad < 0).all()
    assert pred.grad.abs().sum() > 0
    assert ref.grad is None


def test_dspo_validation():
    with pytest.raises(ValueError, match="branch"):
        dspo_loss(t(PRED), t(REF), t(TGT), t(DPL), t(DRL), branch="sd3")
    with pytest.raises(ValueError, match="policy_pred_w.*target_w"):
        dspo_loss(t(PRED), t(REF), t([[0.0]]), t(DPL), t(DRL))
    with pytest.raises(ValueError, match="batch size"):
        dspo_loss(t(PRED), t(REF), t(TGT), t([0.1]), t([0.1]))


# ----------------------------------------------------------------------------- RankDPO
def test_rankdpo_hand_value_three_images():
    beta = 10.0
    policy, ref, phi = [0.10, 0.30, 0.20], [0.2, 0.2, 0.2], [0.5, 1.0, 0.0]
    s = [policy[i] - ref[i] for i in range(3)]  # -0.1, +0.1, 0.0
    tau = {0: 1, 2: 2, 1: 3}  # predicted: lowest s ranks first
    inv_d = {i: 1 / math.log2(1 + tau[i]) for i in range(3)}
    total = 0.0
    for i, j in [(1, 0), (1, 2), (0, 2)]:  # true order 1 > 0 > 2
        delta = abs(2 ** phi[i] - 2 ** phi[j]) * abs(inv_d[i] - inv_d[j])
        total += delta * -logsig(-(beta / 2) * (s[i] - s[j]))
    p = t([policy], grad=True)
    loss, stats = rankdpo_loss(p, t([ref]), t([phi]), beta=beta)
    assert loss.item() == pytest.approx(total, rel=1e-5)
    assert stats["ordered_pairs"] == 3.0
    assert stats["pair_acc"] == pytest.approx(1 / 3)  # only (0, 2) is ranked right
    loss.backward()
    # image 1 is the best by phi but ranked last: its error is pushed down hardest
    assert p.grad[0, 1] > 0 and p.grad[0, 1] == p.grad[0].max()


def test_rankdpo_two_images_is_weighted_dpo_and_ties_give_no_pair():
    beta = 10.0
    weight = (2.0 - 1.0) * (1.0 - 1.0 / math.log2(3.0))
    dpo, _ = diffusion_dpo_loss(t(PW[:1]), t(PL[:1]), t(RW[:1]), t(RL[:1]), beta=beta)
    rank, _ = rankdpo_loss(t([[PW[0], PL[0]]]), t([[RW[0], RL[0]]]), t([[1.0, 0.0]]), beta=beta)
    assert rank.item() == pytest.approx(weight * dpo.item(), rel=1e-5)
    # Two lists: mean over lists; the all-tie list contributes 0.
    policy, ref = t([[PW[0], PL[0]], [0.1, 0.2]]), t([[RW[0], RL[0]], [0.2, 0.2]])
    both, stats = rankdpo_loss(policy, ref, t([[1.0, 0.0], [0.3, 0.3]]), beta=beta)
    assert both.item() == pytest.approx(weight * dpo.item() / 2, rel=1e-5)
    assert stats["ordered_pairs"] == 1.0


def test_rankdpo_validation():
    with pytest.raises(ValueError, match="at least 2"):
        rankdpo_loss(t([[0.1]]), t([[0.1]]), t([[1.0]]))
    with pytest.raises(ValueError, match="policy.*scores"):
        rankdpo_loss(t([[0.1, 0.2]]), t([[0.1, 0.2]]), t([[1.0, 0.0, 0.5]]))
    with pytest.raises(ValueError, match="finite"):
        rankdpo_loss(t([[0.1, 0.2]]), t([[0.1, 0.2]]), t([[1.0, float("nan")]]))


# ----------------------------------------------------------------------------- SFT
def test_sft_is_mean_winner_error():
    pw = t([0.2, 0.4, 0.9], grad=True)
    loss, stats = sft_loss(pw.half())
    assert loss.item() == pytest.approx(0.5, rel=1e-3) and loss.dtype == torch.float32
    loss, _ = sft_loss(pw)
    loss.backward()
    assert pw.grad.tolist() == pytest.approx([1 / 3] * 3)


# ----------------------------------------------------------------------------- registry
def test_registry_selects_by_name_with_defaults():
    assert {"diffusion_dpo", "flow_dpo", "dcpo", "tdpo", "smpo", "mapo", "dspo_sd15", "dspo_sdxl", "kto",
            "dense_dpo", "rankdpo", "sft", "ppo", "d3po"} <= set(LOSSES)
    dcpo = get_loss("dcpo")
    assert dcpo.conditioning == "dual_caption" and dcpo.needs_reference
    loss, _ = dcpo(t(PW), t(PL), t(RW), t(RL))
    expected = sum(-logsig(-(500.0 / 2) * ((PW[i] - RW[i]) - (PL[i] - RL[i]))) for i in range(2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss, _ = dcpo(t(PW), t(PL), t(RW), t(RL), beta=10.0)  # caller overrides the default
    assert loss.item() == pytest.approx((-logsig(1.0) - logsig(-0.5)) / 2, rel=1e-5)
    assert get_loss("tdpo").conditioning == "caption_contrast"
    assert get_loss("dpo") is LOSSES["diffusion_dpo"]
    assert not get_loss("mapo").needs_reference and get_loss("mapo").inputs == "pair"
    assert get_loss("dspo_sdxl").defaults["branch"] == "sdxl"
    assert get_loss("kto").parameters[:3] == ("policy", "ref", "desirable")


def test_unknown_loss_is_a_one_line_error_listing_the_choices():
    with pytest.raises(ValueError) as err:  # also a KeyError, for callers that caught the mapping's
        get_loss("nope")
    message = str(err.value)
    assert "\n" not in message and message.startswith("unknown loss 'nope'; choose one of: d3po, dcpo, ")
    assert set(message.split(": ", 1)[1].split(", ")) == set(LOSSES.names())
    assert isinstance(err.value, KeyError)


def test_input_layouts_name_their_data_kind():
    kinds = {name: INPUT_LAYOUTS.get(name).data_kind for name in INPUT_LAYOUTS.names()}
    assert kinds == {"pair": "pairs", "pair_winner_elements": "pairs", "winner": "pairs", "single": "unpaired",
                     "list": "ranked", "pair_segments": "video_pairs", "transition": None, "transition_pair": None}
    assert INPUT_LAYOUTS.get("transition").errors is None and callable(INPUT_LAYOUTS.get("pair").errors)
    # every registered loss names a registered layout
    assert {get_loss(name).inputs for name in LOSSES.names()} <= set(kinds)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_loss_gives_the_same_value_on_cuda():
    pairs = [t(PW), t(PL), t(RW), t(RL)]
    cases = {
        "diffusion_dpo": (pairs, {"beta": 10.0}),
        "mapo": (pairs[:2], {}),
        "smpo": (pairs + [t([0.8, 0.6])], {"beta": 10.0}),
        "kto": ([t(PW), t(RW), torch.tensor([True, False])], {"beta": 10.0}),
        "dense_dpo": ([x[None] for x in pairs] + [torch.tensor([[1, -1]])], {"beta": 10.0}),
        "dspo_sdxl": ([t(PRED), t(REF), t(TGT), t(DPL), t(DRL)], {"beta": 20.0}),
        "dspo_sd15": ([t(PRED), t(REF), t(TGT), t(DPL), t(DRL)], {"beta": 2.0}),
        "rankdpo": ([t([[0.1, 0.3, 0.2]]), t([[0.2, 0.2, 0.2]]), t([[0.5, 1.0, 0.0]])], {"beta": 10.0}),
        "sft": (pairs[:1], {}),
    }
    for name, (args, kwargs) in cases.items():
        loss_cpu, stats_cpu = get_loss(name)(*args, **kwargs)
        loss_gpu, stats_gpu = get_loss(name)(*[a.cuda() for a in args], **kwargs)
        assert loss_gpu.device.type == "cuda", name
        assert loss_gpu.item() == pytest.approx(loss_cpu.item(), rel=1e-5), name
        assert stats_gpu == pytest.approx(stats_cpu, rel=1e-5, abs=1e-7), name
