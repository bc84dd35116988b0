"""Flow-matching SDE / CPS kernels against formulas computed independently in float64."""
import math

import diffalign  # noqa: F401  (compat shim first)
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from diffalign.samplers import flow_cps_step_with_logprob, flow_sde_step_with_logprob

SHAPE = (3, 4, 5, 6)


def make_scheduler(steps=10, shift=3.0):
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps)
    return sched


def tensors(seed=0, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def sde_reference(sched, idx, v, x, prev, a):
    """Flow-GRPO's SDE step written out in float64 for one sample (scalar sigmas)."""
    sig = float(sched.sigmas[idx])
    nxt = float(sched.sigmas[idx + 1])
    dt = nxt - sig
    denom = 1 - (float(sched.sigmas[1]) if sig == 1.0 else sig)
    std_t = a * math.sqrt(sig / denom)
    v, x, prev = v.double(), x.double(), prev.double()
    mean = x * (1 + std_t**2 / (2 * sig) * dt) + v * (1 + std_t**2 * (1 - sig) / (2 * sig)) * dt
    std = std_t * math.sqrt(-dt)
    logp = -((prev - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return mean, std, logp.mean()


def test_sde_log_prob_matches_float64_formula_including_sigma_one():
    sched = make_scheduler()
    assert float(sched.sigmas[0]) == 1.0  # the special case is exercised at index 0
    v, x, prev = tensors()
    idx = [0, 4, 9]  # sigma == 1, a middle step, the last step (sigma_next == 0)
    t = sched.timesteps[idx]
    _, logp = flow_sde_step_with_logprob(sched, v, t, x, noise_level=0.7, prev_sample=prev)
    assert logp.shape == (3,) and logp.dtype == torch.float32
    for b, i in enumerate(idx):
        _, _, expected = sde_reference(sched, i, v[b], x[b], prev[b], 0.7)
        assert logp[b].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-5)


def test_sde_sampled_value_is_mean_plus_std_times_generator_noise():
    sched = make_scheduler()
    v, x, _ = tensors(1)
    t = sched.timesteps[3]
    prev, logp = flow_sde_step_with_logprob(
        sched, v, t, x, noise_level=0.5, generator=torch.Generator().manual_seed(7)
    )
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)).double()
    for b in range(SHAPE[0]):
        mean, std, expected_logp = sde_reference(sched, 3, v[b], x[b], prev[b], 0.5)
        torch.testing.assert_close(prev[b].double(), mean + std * z[b], rtol=1e-5, atol=1e-5)
        assert logp[b].item() == pytest.approx(expected_logp.item(), rel=1e-5)
        # On-policy draws: the log-density is the Gaussian's at z, i.e. -z^2/2 - log(std) - log(2pi)/2.
        on_policy = (-(z[b] ** 2) / 2).mean() - math.log(std) - 0.5 * math.log(2 * math.pi)
        assert logp[b].item() == pytest.approx(on_policy.item(), rel=1e-4)


def test_noise_level_zero_is_the_schedulers_euler_step_exactly():
    v, x, _ = tensors(2)
    for i in (0, 5, 9):
        sched = make_scheduler()
        t = sched.timesteps[i]
        prev, logp = flow_sde_step_with_logprob(sched, v, t, x, noise_level=0.0)
        euler = make_scheduler().step(v, t, x).prev_sample
        assert torch.equal(prev, euler)
        assert torch.equal(logp, torch.zeros(SHAPE[0]))
        # The scheduler used by the kernel was not advanced.
        assert sched.step_index is None


def test_deterministic_step_refuses_a_given_prev_sample():
    sched = make_scheduler()
    v, x, prev = tensors(3)
    with pytest.raises(ValueError, match="deterministic"):
        flow_sde_step_with_logprob(sched, v, sched.timesteps[2], x, noise_level=0.0, prev_sample=prev)
    with pytest.raises(ValueError, match="noise_level"):
        flow_sde_step_with_logprob(sched, v, sched.timesteps[2], x, noise_level=-0.1)


def test_stored_prev_sample_gives_back_the_same_log_prob():
    sched = make_scheduler()
    v, x, _ = tensors(4)
    t = sched.timesteps[[1, 2, 8]]
    for dtype in (torch.float32, torch.bfloat16):
        prev, logp = flow_sde_step_with_logprob(
            sched, v.to(dtype), t, x.to(dtype), generator=torch.Generator().manual_seed(0)
        )
        assert prev.dtype == dtype and logp.dtype == torch.float32
        _, again = flow_sde_step_with_logprob(sched, v.to(dtype), t, x.to(dtype), prev_sample=prev)
        assert torch.equal(logp, again)
    # A different model output gives a different density for the same stored sample.
    _, other = flow_sde_step_with_logprob(sched, v + 0.1, t, x, prev_sample=prev.float())
    assert not torch.allclose(other, logp.float())


def test_batched_timesteps_equal_per_sample_calls():
    sched = make_scheduler(steps=6)
    v, x, prev = tensors(5)
    t = sched.timesteps[[5, 0, 2]]
    _, batched = flow_sde_step_with_logprob(sched, v, t, x, prev_sample=prev)
    for b in range(3):
        _, single = flow_sde_step_with_logprob(sched, v[b : b + 1], t[b], x[b : b + 1], prev_sample=prev[b : b + 1])
        assert batched[b].item() == pytest.approx(single.item(), rel=1e-6)
    with pytest.raises(ValueError, match="not in the scheduler's schedule"):
        flow_sde_step_with_logprob(sched, v, torch.tensor([123.0, 456.0, 789.0]), x)
    with pytest.raises(ValueError, match="values for a batch"):
        flow_sde_step_with_logprob(sched, v, t[:2], x)


def test_cps_formula_gaussian_and_reference_log_prob():
    sched = make_scheduler()
    v, x, prev = tensors(6)
    i, a = 3, 0.8
    t = sched.timesteps[i]
    sig, nxt = float(sched.sigmas[i]), float(sched.sigmas[i + 1])
    std = nxt * math.sin(a * math.pi / 2)
    xd, vd = x.double(), v.double()
    mean = (1 - nxt) * (xd - sig * vd) + math.sqrt(nxt**2 - std**2) * (xd + (1 - sig) * vd)
    gauss = -((prev.double() - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    _, logp = flow_cps_step_with_logprob(sched, v, t, x, noise_level=a, prev_sample=prev)
    torch.testing.assert_close(logp.double(), gauss.mean(dim=(1, 2, 3)), rtol=1e-5, atol=1e-5)
    _, ref = flow_cps_step_with_logprob(sched, v, t, x, noise_level=a, prev_sample=prev, reference_log_prob=True)
    torch.testing.assert_close(ref.double(), -((prev.double() - mean) ** 2).mean(dim=(1, 2, 3)), rtol=1e-5, atol=1e-6)
    # Sampled then re-evaluated: identical.
    drawn, lp = flow_cps_step_with_logprob(sched, v, t, x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(lp, flow_cps_step_with_logprob(sched, v, t, x, prev_sample=drawn)[1])


def test_cps_preserves_the_marginal_coefficients():
    """With the exact velocity of a known (x0, eps), the next state is (1 - s') x0 + noise of std s'."""
    sched = make_scheduler()
    i = 2
    sig, nxt = float(sched.sigmas[i]), float(sched.sigmas[i + 1])
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((1, n), 0.75)
    eps = torch.randn((1, n), generator=g)
    x = (1 - sig) * x0 + sig * eps
    v = eps - x0
    nxt_sample, _ = flow_cps_step_with_logprob(sched, v, sched.timesteps[i], x, noise_level=0.8, generator=g)
    residual = nxt_sample - (1 - nxt) * x0
    assert residual.mean().item() == pytest.approx(0.0, abs=5e-3)
    assert residual.std().item() == pytest.approx(nxt, rel=1e-2)
    # The SDE kernel's noise is not coefficient-preserving in one step (its drift corrects over steps).
    sde_sample, _ = flow_sde_step_with_logprob(sched, v, sched.timesteps[i], x, noise_level=0.8, generator=g)
    assert abs((sde_sample - (1 - nxt) * x0).std().item() - nxt) > 0.01


def test_cps_noise_level_zero_and_last_step_are_deterministic_euler():
    sched = make_scheduler()
    v, x, prev = tensors(7)
    t = sched.timesteps[4]
    cps, logp = flow_cps_step_with_logprob(sched, v, t, x, noise_level=0.0)
    torch.testing.assert_close(cps, make_scheduler().step(v, t, x).prev_sample, rtol=1e-5, atol=1e-5)
    assert torch.equal(logp, torch.zeros(SHAPE[0]))
    last = sched.timesteps[-1]  # sigma_next == 0: std == 0, the step lands on x0_hat
    out, logp = flow_cps_step_with_logprob(sched, v, last, x)
    torch.testing.assert_close(out, x - float(sched.sigmas[-2]) * v)
    assert torch.equal(logp, torch.zeros(SHAPE[0]))
    with pytest.raises(ValueError, match="deterministic"):
        flow_cps_step_with_logprob(sched, v, last, x, prev_sample=prev)


def test_unset_scheduler_is_a_clear_error():
    v, x, _ = tensors(8)
    with pytest.raises(ValueError, match="set_timesteps"):
        flow_sde_step_with_logprob(FlowMatchEulerDiscreteScheduler(), v, 500.0, x)
