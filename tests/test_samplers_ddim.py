"""The DDIM-with-eta kernel against values worked out independently (float64 formulas from the
betas, diffusers' own ``DDIMScheduler.step`` with fixed noise, torch's Normal density)."""
import math

import diffalign  # noqa: F401  (compat shim first)
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from diffalign.samplers import ddim_step_with_logprob

T = 1000


def make_scheduler(steps=10, **config):
    base = dict(
        num_train_timesteps=T, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    base.update(config)
    sched = DDIMScheduler(**base)
    sched.set_timesteps(steps)
    return sched


def abar_table():
    """alphā_t from the SD betas, in float64, without diffusers."""
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), T, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def hand_step(kind, out, t, x, eta, steps):
    """Mean and std of the DDIM-eta transition, float64, per sample. t: list of ints."""
    ab = abar_table()
    t = np.asarray(t)
    a_t = torch.tensor(ab[t], dtype=torch.float64).view(-1, *[1] * (x.ndim - 1))
    a_p = torch.tensor(ab[np.maximum(t - T // steps, 0)], dtype=torch.float64).view_as(a_t)
    x, out = x.double(), out.double()
    if kind == "epsilon":
        x0, eps = (x - (1 - a_t).sqrt() * out) / a_t.sqrt(), out
    elif kind == "v_prediction":
        x0, eps = a_t.sqrt() * x - (1 - a_t).sqrt() * out, a_t.sqrt() * out + (1 - a_t).sqrt() * x
    else:
        x0, eps = out, (x - a_t.sqrt() * out) / (1 - a_t).sqrt()
    std = eta * ((1 - a_p) / (1 - a_t) * (1 - a_t / a_p)).sqrt()
    mean = a_p.sqrt() * x0 + (1 - a_p - std**2).sqrt() * eps
    return mean, std


def hand_logprob(prev, mean, std):
    lp = -((prev.double() - mean) ** 2) / (2 * std**2) - std.log() - 0.5 * math.log(2 * math.pi)
    return lp.reshape(lp.shape[0], -1).mean(1)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_batched_timesteps_match_hand_formulas(kind):
    sched = make_scheduler(10, prediction_type=kind)
    x, out, prev = randn(3, 4, 8, 8, seed=1), randn(3, 4, 8, 8, seed=2), randn(3, 4, 8, 8, seed=3)
    t = [901, 401, 1]  # one per sample; t=1 exercises the clamp t_prev = 0
    got_prev, lp = ddim_step_with_logprob(sched, out, torch.tensor(t), x, eta=1.0, prev_sample=prev)
    mean, std = hand_step(kind, out, t, x, 1.0, 10)
    assert got_prev is prev  # a stored sample is not resampled
    assert lp.shape == (3,) and lp.dtype == torch.float32
    torch.testing.assert_close(lp.double(), hand_logprob(prev, mean, std), rtol=1e-5, atol=1e-4)
    # each sample equals its own unbatched step
    for i, ti in enumerate(t):
        _, lp_i = ddim_step_with_logprob(sched, out[i : i + 1], ti, x[i : i + 1], prev_sample=prev[i : i + 1])
        torch.testing.assert_close(lp_i, lp[i : i + 1])


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_sampled_step_equals_diffusers_ddim_with_same_noise(kind):
    sched = make_scheduler(20, prediction_type=kind)
    x, out = randn(2, 4, 8, 8, seed=4), randn(2, 4, 8, 8, seed=5)
    for t in sched.timesteps[[0, 7, -1]]:
        prev, lp = ddim_step_with_logprob(sched, out, t, x, eta=1.0, generator=torch.Generator().manual_seed(9))
        noise = randn(2, 4, 8, 8, seed=9)
        expected = sched.step(out, t, x, eta=1.0, variance_noise=noise).prev_sample
        torch.testing.assert_close(prev, expected, rtol=1e-5, atol=1e-5)
        # the density of a sampled point: -|z|^2/2 - log std - log(2 pi)/2, averaged
        _, std = hand_step(kind, out, [int(t)] * 2, x, 1.0, 20)
        closed = -0.5 * (noise.double() ** 2).reshape(2, -1).mean(1) - std.reshape(-1).log() - 0.5 * math.log(2 * math.pi)
        torch.testing.assert_close(lp.double(), closed, rtol=1e-5, atol=1e-4)


def test_stored_prev_sample_gives_back_the_sampled_log_prob_and_normal_density():
    sched = make_scheduler(10)
    x, out = randn(2, 4, 8, 8, seed=6), randn(2, 4, 8, 8, seed=7)
    t = sched.timesteps[3]
    prev, lp = ddim_step_with_logprob(sched, out, t, x, generator=torch.Generator().manual_seed(1))
    prev2, lp2 = ddim_step_with_logprob(sched, out, t, x, prev_sample=prev)
    assert torch.equal(prev2, prev) and torch.equal(lp2, lp)
    mean, std = hand_step("epsilon", out, [int(t)] * 2, x, 1.0, 10)
    normal = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(prev.double())
    torch.testing.assert_close(lp.double(), normal.reshape(2, -1).mean(1), rtol=1e-5, atol=1e-4)
    # a different model output gives a different density for the same stored sample
    _, lp3 = ddim_step_with_logprob(sched, out + 0.1, t, x, prev_sample=prev)
    assert (lp3 - lp).abs().min() > 1e-4


def test_eta_scales_the_std_and_must_be_positive():
    sched = make_scheduler(10)
    x, out, prev = randn(1, 4, 4, 4, seed=1), randn(1, 4, 4, 4, seed=2), randn(1, 4, 4, 4, seed=3)
    t = int(sched.timesteps[2])
    _, lp = ddim_step_with_logprob(sched, out, t, x, eta=0.5, prev_sample=prev)
    mean, std = hand_step("epsilon", out, [t], x, 0.5, 10)
    torch.testing.assert_close(lp.double(), hand_logprob(prev, mean, std), rtol=1e-5, atol=1e-4)
    for eta in (0.0, -1.0):
        with pytest.raises(ValueError, match="eta > 0"):
            ddim_step_with_logprob(sched, out, t, x, eta=eta)


def test_last_step_uses_alphas_cumprod_0_even_with_set_alpha_to_one():
    sched = make_scheduler(10, set_alpha_to_one=True)  # diffusers' own step would use abar_prev = 1
    x, out, prev = randn(1, 4, 4, 4, seed=1), randn(1, 4, 4, 4, seed=2), randn(1, 4, 4, 4, seed=3)
    _, lp = ddim_step_with_logprob(sched, out, 1, x, prev_sample=prev)
    mean, std = hand_step("epsilon", out, [1], x, 1.0, 10)
    torch.testing.assert_close(lp.double(), hand_logprob(prev, mean, std), rtol=1e-5, atol=1e-4)


def test_clip_sample_clamps_predicted_x0_like_diffusers():
    sched = make_scheduler(10, clip_sample=True, clip_sample_range=0.5)
    x, out = 3 * randn(2, 4, 4, 4, seed=1), randn(2, 4, 4, 4, seed=2)
    t = sched.timesteps[1]
    prev, _ = ddim_step_with_logprob(sched, out, t, x, generator=torch.Generator().manual_seed(0))
    expected = sched.step(out, t, x, eta=1.0, variance_noise=randn(2, 4, 4, 4, seed=0)).prev_sample
    torch.testing.assert_close(prev, expected, rtol=1e-5, atol=1e-5)
    unclipped, _ = ddim_step_with_logprob(make_scheduler(10), out, t, x, generator=torch.Generator().manual_seed(0))
    assert (unclipped - prev).abs().max() > 1e-2


def test_video_latents_and_gradients():
    sched = make_scheduler(10, prediction_type="v_prediction")
    x, prev = randn(2, 3, 4, 4, 4, seed=1), randn(2, 3, 4, 4, 4, seed=3)
    out = randn(2, 3, 4, 4, 4, seed=2).requires_grad_(True)
    t = [801, 101]
    _, lp = ddim_step_with_logprob(sched, out, torch.tensor(t), x, prev_sample=prev)
    mean, std = hand_step("v_prediction", out.detach(), t, x, 1.0, 10)
    torch.testing.assert_close(lp.double(), hand_logprob(prev, mean, std), rtol=1e-5, atol=1e-4)
    lp.sum().backward()  # the policy gradient flows into the model output
    assert out.grad is not None and out.grad.abs().sum() > 0


def test_half_precision_sample_keeps_dtype_and_logprob_is_fp32():
    sched = make_scheduler(10)
    x, out = randn(2, 4, 4, 4, seed=1).bfloat16(), randn(2, 4, 4, 4, seed=2).bfloat16()
    prev, lp = ddim_step_with_logprob(sched, out, sched.timesteps[0], x, generator=torch.Generator().manual_seed(0))
    assert prev.dtype == torch.bfloat16 and lp.dtype == torch.float32
    _, lp2 = ddim_step_with_logprob(sched, out, sched.timesteps[0], x, prev_sample=prev)
    assert torch.equal(lp, lp2)


def test_clear_errors():
    sched = make_scheduler(10, steps_offset=0)  # timesteps end at 0: the step there has no variance
    x = randn(1, 4, 4, 4)
    with pytest.raises(ValueError, match="zero step variance"):
        ddim_step_with_logprob(sched, x, 0, x)
    with pytest.raises(ValueError, match="set_timesteps"):
        ddim_step_with_logprob(DDIMScheduler(), x, 10, x)
    with pytest.raises(ValueError, match="3 values for a batch of 1"):
        ddim_step_with_logprob(sched, x, torch.tensor([1, 2, 3]), x)
