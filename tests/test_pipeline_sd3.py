"""SD3 adapter on the tiny real StableDiffusion3Pipeline: training path, flow sampling, LoRA I/O."""
import math
import statistics

import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusion3Pipeline

from diffalign.pipelines import load_adapter
from diffalign.pipelines.sd3 import SD3Adapter
from diffalign.pipelines.sampling import sample
from diffalign.pipelines.tiny import build_tiny_adapter, build_tiny_pipeline

PROMPTS = fc.PROMPTS
gen = fc.seeded


def fixed_inputs(adapter, seed=0):
    latents = torch.randn(2, *adapter.latent_shape(32, 32), generator=gen(seed))
    return latents, torch.tensor([900.0, 250.0]), adapter.encode_prompt(PROMPTS)


@pytest.mark.slow
def test_tiny_pipeline_is_real_and_deterministic():
    a, b, c = build_tiny_pipeline("sd3", seed=0), build_tiny_pipeline("sd3", seed=0), build_tiny_pipeline("sd3", seed=1)
    assert isinstance(a, StableDiffusion3Pipeline)
    sa, sb, sc = a.transformer.state_dict(), b.transformer.state_dict(), c.transformer.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert torch.equal(a.text_encoder_3.shared.weight, b.text_encoder_3.shared.weight)


@pytest.mark.slow
def test_encode_prompt_batched_three_encoders_and_optional_t5():
    adapter = build_tiny_adapter("sd3")
    cond = adapter.encode_prompt(PROMPTS)
    # 77 CLIP tokens (CLIP-L | CLIP-G concatenated, zero-padded to T5's width) + 256 T5 tokens.
    assert cond["prompt_embeds"].shape == (2, 77 + 256, 64)
    assert cond["pooled_prompt_embeds"].shape == (2, 16 + 32)
    assert torch.all(cond["prompt_embeds"][:, :77, 48:] == 0)
    assert cond["prompt_embeds"][:, 77:].abs().sum() > 0
    single = adapter.encode_prompt(PROMPTS[1:])
    torch.testing.assert_close(cond[1:2]["prompt_embeds"], single["prompt_embeds"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond["pooled_prompt_embeds"][0], cond["pooled_prompt_embeds"][1])

    no_t5 = build_tiny_adapter("sd3", with_t5=False)
    cond = no_t5.encode_prompt(PROMPTS)
    assert cond["prompt_embeds"].shape == (2, 77 + 256, 64)
    assert torch.all(cond["prompt_embeds"][:, 77:] == 0)


def test_logit_normal_timesteps_follow_the_shifted_density():
    adapter = build_tiny_adapter("sd3")  # shift 3
    t = adapter.sample_timesteps(40_000, gen(0))
    assert t.dtype == torch.float32 and t.shape == (40_000,)
    grid = adapter.noise_scheduler.timesteps
    assert torch.isin(t, grid).all()  # values of the shifted training grid, as diffusers' SD3 script
    sigma = (t / 1000).tolist()

    def expected_sigma(u, shift):  # u = sigmoid(N(0, 1)); index floor(u * 1000) into the shifted grid
        s = (1000 - math.floor(u * 1000)) / 1000
        return shift * s / (1 + (shift - 1) * s)

    qs = statistics.quantiles(sigma, n=100)
    sig = 1 / (1 + math.exp(-1))  # u at +1 std of the logit; sigma decreases with u
    assert qs[49] == pytest.approx(expected_sigma(0.5, 3.0), abs=0.01)  # median 0.75 (0.5 unshifted)
    assert qs[15] == pytest.approx(expected_sigma(sig, 3.0), abs=0.015)  # ~15.87% quantile
    assert qs[83] == pytest.approx(expected_sigma(1 - sig, 3.0), abs=0.015)  # ~84.13% quantile

    unshifted = build_tiny_adapter("sd3", scheduler={"shift": 1.0})
    med = statistics.median((unshifted.sample_timesteps(40_000, gen(0)) / 1000).tolist())
    assert med == pytest.approx(0.5, abs=0.01)
    # Same generator state -> same draws.
    assert torch.equal(adapter.sample_timesteps(8, gen(3)), adapter.sample_timesteps(8, gen(3)))


def test_flow_noising_target_and_x0_estimate():
    adapter = build_tiny_adapter("sd3")
    x0, noise = torch.randn(2, 4, 16, 16, generator=gen(0)), torch.randn(2, 4, 16, 16, generator=gen(1))
    t = torch.tensor([750.0, 100.0])
    noisy = adapter.add_noise(x0, noise, t)
    torch.testing.assert_close(noisy[0], 0.25 * x0[0] + 0.75 * noise[0])
    torch.testing.assert_close(noisy[1], 0.9 * x0[1] + 0.1 * noise[1])
    target = adapter.training_target(x0, noise, t)
    torch.testing.assert_close(target, noise - x0)
    # The exact velocity carries x_sigma back to x0: x0 = x_sigma - sigma v.
    torch.testing.assert_close(adapter.predict_original(target, t, noisy), x0, rtol=1e-5, atol=1e-5)


def test_full_training_step_path_reaches_the_lora_parameters():
    adapter = build_tiny_adapter("sd3")
    pixels = torch.rand(2, 3, 32, 32, generator=gen(0))
    with torch.no_grad():
        latents = adapter.encode_pixels(pixels, generator=gen(1))
    assert latents.shape == (2, 4, 16, 16)
    posterior = adapter.vae.encode(pixels * 2 - 1).latent_dist.sample(gen(1))
    torch.testing.assert_close(latents, (posterior - 0.0609) * 1.5305)  # shift AND scaling factor
    decoded = adapter.decode_latents(latents)
    assert decoded.shape == (2, 3, 32, 32) and 0 <= decoded.min() and decoded.max() <= 1

    params = adapter.add_lora(rank=4)
    cond = adapter.encode_prompt(PROMPTS)
    errors, parts = adapter.training_errors(latents, cond, generator=gen(2))
    assert errors.shape == (2,) and torch.isfinite(errors).all()
    assert parts["timesteps"].dtype == torch.float32
    torch.testing.assert_close(parts["target"], parts["noise"] - latents)
    errors.mean().backward()
    lora_b = {n: p for n, p in adapter.denoiser.named_parameters() if "lora_B" in n}
    assert len(lora_b) == len(params) // 2 > 0
    # The last block is context_pre_only: its context queries never reach the output.
    last = f"transformer_blocks.{len(adapter.denoiser.transformer_blocks) - 1}.attn.add_q_proj"
    dead = {n for n in lora_b if n.startswith(last)}
    assert len(dead) == 1 and lora_b[dead.pop()].grad.abs().sum() == 0
    assert all(p.grad.abs().sum() > 0 for n, p in lora_b.items() if not n.startswith(last))
    assert all(not p.requires_grad for p in adapter.vae.parameters())
    # Gradient checkpointing gives the same errors and gradients.
    grads = [p.grad.clone() for p in params]
    adapter.denoiser.zero_grad(set_to_none=True)
    adapter.enable_gradient_checkpointing()
    again, _ = adapter.training_errors(latents, cond, noise=parts["noise"], timesteps=parts["timesteps"])
    again.mean().backward()
    torch.testing.assert_close(again, errors)
    for g, p in zip(grads, params):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_sampler_step_log_prob_and_rollout_match_the_diffusers_pipeline():
    adapter = build_tiny_adapter("sd3")
    sched = adapter.sampling_scheduler(4)
    latents, _, cond = fixed_inputs(adapter)
    t = sched.timesteps[1]
    out = adapter.forward(latents, t, cond)
    prev, logp = adapter.sampler_step(sched, out, t, latents, generator=gen(0))
    assert logp.shape == (2,) and torch.isfinite(logp).all()
    _, again = adapter.sampler_step(sched, out, t, latents, prev_sample=prev)
    assert torch.equal(again, logp)

    # noise_level 0 through the one sampling chain = the pipeline's own Euler sampling, CFG included.
    ode = sample(adapter, PROMPTS, num_inference_steps=4, guidance_scale=3.0, noise_level=0.0, latents=latents,
                 decode=False)
    reference = adapter.pipe(PROMPTS, num_inference_steps=4, guidance_scale=3.0, latents=latents,
                             output_type="latent").images
    torch.testing.assert_close(ode.final, reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(ode.log_probs, torch.zeros(2, 4))

    sde = sample(adapter, PROMPTS, num_inference_steps=4, guidance_scale=3.0, latents=latents, generator=gen(0))
    assert sde.latents.shape == (2, 4, 4, 16, 16) and sde.images.shape == (2, 3, 32, 32)
    assert torch.isfinite(sde.log_probs).all() and sde.log_probs.shape == (2, 4)
    torch.testing.assert_close(sde.timesteps, sched.timesteps.expand(2, 4))
    assert not torch.allclose(sde.final, reference)


def test_reference_is_the_base_network():
    fc.check_reference_is_base("sd3")


def test_attention_backends():
    fc.check_attention_errors("sd3")


def test_saved_lora_loads_in_the_diffusers_pipeline_and_changes_its_output(tmp_path):
    adapter, _ = fc.lora_adapter("sd3")  # rank 4, alpha 8, random B
    latents, t, cond = fixed_inputs(adapter)
    with torch.no_grad():
        tuned = adapter.forward(latents, t, cond)
        tuned_ode = sample(adapter, PROMPTS, num_inference_steps=3, guidance_scale=2.0, noise_level=0.0,
                           latents=latents, decode=False).final
    path = adapter.save_lora(tmp_path)
    assert path.endswith("pytorch_lora_weights.safetensors")

    pipe = build_tiny_pipeline("sd3", seed=0)
    kwargs = dict(num_inference_steps=3, guidance_scale=2.0, latents=latents, output_type="latent")
    with torch.no_grad():
        base = pipe.transformer(hidden_states=latents, encoder_hidden_states=cond["prompt_embeds"],
                                pooled_projections=cond["pooled_prompt_embeds"], timestep=t).sample
        base_images = pipe(PROMPTS, **kwargs).images
        pipe.load_lora_weights(str(tmp_path))
        loaded = pipe.transformer(hidden_states=latents, encoder_hidden_states=cond["prompt_embeds"],
                                  pooled_projections=cond["pooled_prompt_embeds"], timestep=t).sample
        loaded_images = pipe(PROMPTS, **kwargs).images
    torch.testing.assert_close(loaded, tuned, rtol=1e-5, atol=1e-5)
    assert (loaded - base).abs().max() > 1e-2
    torch.testing.assert_close(loaded_images, tuned_ode, rtol=1e-4, atol=1e-4)
    assert (loaded_images - base_images).abs().max() > 1e-2


@pytest.mark.slow
def test_save_pretrained_merges_lora_and_reloads_with_family_detection(tmp_path):
    adapter, _ = fc.lora_adapter("sd3")
    latents, t, cond = fixed_inputs(adapter)
    with torch.no_grad():
        tuned = adapter.forward(latents, t, cond)
    adapter.save_pretrained(tmp_path)
    pipe = DiffusionPipeline.from_pretrained(str(tmp_path))
    assert isinstance(pipe, StableDiffusion3Pipeline)
    loaded = load_adapter(str(tmp_path))
    assert isinstance(loaded, SD3Adapter) and not loaded.has_lora
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward(latents, t, loaded.encode_prompt(PROMPTS)), tuned,
                                   rtol=1e-5, atol=1e-5)
    # The adapter itself keeps its (unmerged) LoRA after saving.
    assert adapter.has_lora and any("lora_B" in n for n, _ in adapter.denoiser.named_parameters())
