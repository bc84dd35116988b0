"""CogVideoX adapter on the tiny real CogVideoXPipeline: video latents, v-prediction, DDIM log-probs, LoRA."""
import math

import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import pytest
import torch
from diffusers import CogVideoXPipeline, DiffusionPipeline

from diffalign.pipelines import load_adapter
from diffalign.pipelines.cogvideox import CogVideoXAdapter
from diffalign.pipelines.sampling import sample
from diffalign.pipelines.tiny import build_tiny_adapter, build_tiny_pipeline

PROMPTS = ["a red circle moving left", "two dogs running"]
gen = fc.seeded


def fixed_inputs(adapter, seed=0):
    latents = torch.randn(2, *adapter.latent_shape(16, 16, 9), generator=gen(seed))
    return latents, torch.tensor([800, 120]), adapter.encode_prompt(PROMPTS)


def shifted_alphas_cumprod(shift):
    """CogVideoX's schedule written out: scaled-linear betas, then SD3-style SNR shift of alphā."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, dim=0)
    return abar / (shift + (1 - shift) * abar)


def test_tiny_pipeline_is_real_and_deterministic():
    a, b = build_tiny_pipeline("cogvideox", seed=0), build_tiny_pipeline("cogvideox", seed=0)
    assert isinstance(a, CogVideoXPipeline)
    sa, sb = a.transformer.state_dict(), b.transformer.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(a.vae.decoder.conv_out.conv.weight, b.vae.decoder.conv_out.conv.weight)
    c = build_tiny_pipeline("cogvideox", seed=1).transformer.state_dict()
    assert not all(torch.equal(sa[k], c[k]) for k in sa)


def test_video_latents_layout_and_vae_round_trip():
    adapter = build_tiny_adapter("cogvideox")
    assert adapter.modality == "video"
    assert adapter.default_size() == (16, 16, 9)
    assert adapter.latent_shape(16, 16, 9) == (3, 4, 4, 4)  # F = 1 + (9 - 1) / 4
    assert adapter.latent_shape(16, 32, 13) == (4, 4, 4, 8)
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        adapter.latent_shape(16, 16, 8)
    pixels = torch.rand(2, 9, 3, 16, 16, generator=gen(0))
    latents = adapter.encode_pixels(pixels, generator=gen(1))
    assert latents.shape == (2, 3, 4, 4, 4)
    posterior = adapter.vae.encode((pixels * 2 - 1).permute(0, 2, 1, 3, 4)).latent_dist.sample(gen(1))
    torch.testing.assert_close(latents, posterior.permute(0, 2, 1, 3, 4) * 1.15258426)
    video = adapter.decode_latents(latents)
    assert video.shape == (2, 9, 3, 16, 16) and 0 <= video.min() and video.max() <= 1
    with pytest.raises(ValueError, match=r"\[B, F, 3, H, W\]"):
        adapter.encode_pixels(torch.rand(2, 3, 16, 16))


def test_t5_prompt_encoding_is_batched():
    adapter = build_tiny_adapter("cogvideox")
    cond = adapter.encode_prompt(PROMPTS)
    assert cond["prompt_embeds"].shape == (2, 226, 32)
    one = adapter.encode_prompt(PROMPTS[:1])
    torch.testing.assert_close(cond[:1]["prompt_embeds"], one["prompt_embeds"], rtol=1e-5, atol=1e-5)


def test_schedule_carries_the_snr_shift_and_v_prediction_target():
    adapter = build_tiny_adapter("cogvideox", scheduler={"rescale_betas_zero_snr": False})
    abar = shifted_alphas_cumprod(3.0)
    torch.testing.assert_close(adapter.noise_scheduler.alphas_cumprod.double(), abar, rtol=1e-5, atol=1e-7)
    assert adapter.prediction_type == "v_prediction"
    x0, noise = torch.randn(2, 3, 4, 4, 4, generator=gen(0)), torch.randn(2, 3, 4, 4, 4, generator=gen(1))
    t = torch.tensor([700, 30])
    a = abar[t].float().reshape(2, 1, 1, 1, 1)
    torch.testing.assert_close(adapter.add_noise(x0, noise, t), a.sqrt() * x0 + (1 - a).sqrt() * noise)
    torch.testing.assert_close(adapter.training_target(x0, noise, t), a.sqrt() * noise - (1 - a).sqrt() * x0)
    # The default (real) config also rescales to zero terminal SNR: the last step is pure noise.
    assert build_tiny_adapter("cogvideox").noise_scheduler.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-6)


def test_full_training_step_path_reaches_the_lora_parameters():
    adapter = build_tiny_adapter("cogvideox")
    params = adapter.add_lora(rank=4)
    latents = adapter.encode_pixels(torch.rand(2, 9, 3, 16, 16, generator=gen(0)), generator=gen(1))
    cond = adapter.encode_prompt(PROMPTS)
    errors, parts = adapter.training_errors(latents, cond, generator=gen(2))
    assert errors.shape == (2,) and torch.isfinite(errors).all()
    assert parts["timesteps"].dtype == torch.int64 and parts["prediction"].shape == latents.shape
    errors.mean().backward()
    lora_b = [p for n, p in adapter.denoiser.named_parameters() if "lora_B" in n]
    assert len(lora_b) == len(params) // 2 == 2 * 4  # 2 blocks x (to_q, to_k, to_v, to_out.0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    # Gradient checkpointing gives the same errors and gradients.
    grads = [p.grad.clone() for p in params]
    adapter.denoiser.zero_grad(set_to_none=True)
    adapter.enable_gradient_checkpointing()
    again, _ = adapter.training_errors(latents, cond, noise=parts["noise"], timesteps=parts["timesteps"])
    again.mean().backward()
    torch.testing.assert_close(again, errors)
    for g, p in zip(grads, params):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
    # Per-segment errors (DenseDPO): latent frames split into contiguous chunks, each averaged.
    frame_errors = ((parts["prediction"] - parts["target"]) ** 2).mean(dim=(2, 3, 4))  # [B, F]
    assert frame_errors.shape == (2, 3)
    same = dict(noise=parts["noise"], timesteps=parts["timesteps"])
    per_frame, _ = adapter.training_errors(latents, cond, segments=3, **same)
    torch.testing.assert_close(per_frame, frame_errors)
    two, _ = adapter.training_errors(latents, cond, segments=2, **same)  # frames {0, 1} and {2}
    torch.testing.assert_close(two, torch.stack([frame_errors[:, :2].mean(1), frame_errors[:, 2]], 1))


@pytest.mark.parametrize("size", [None, (16, 24)])
def test_forward_matches_the_pipeline_transformer_call_with_rotary_embeddings(size):
    """At the default size and at a non-square one (CogVideoX's 480x720 in miniature: the rotary
    tables are sized from the latents, as the pipeline sizes them from height and width)."""
    adapter = build_tiny_adapter("cogvideox")
    latents, _, _ = fixed_inputs(adapter)
    call = {}
    if size is not None:
        call = dict(height=size[0], width=size[1])
        latents = torch.randn(latents.shape[0], *adapter.latent_shape(*size, 9), generator=torch.Generator().manual_seed(3))
    captured = []
    hook = adapter.denoiser.register_forward_hook(lambda m, args, kwargs, out: captured.append((kwargs, out[0])),
                                                  with_kwargs=True)
    with torch.no_grad():
        adapter.pipe(PROMPTS, num_inference_steps=2, guidance_scale=1.0, latents=latents, output_type="latent", **call)
    hook.remove()
    kwargs, pipeline_out = captured[0]
    assert kwargs["image_rotary_emb"] is not None
    with torch.no_grad():
        ours = adapter.forward(latents, kwargs["timestep"], adapter.encode_prompt(PROMPTS))
        torch.testing.assert_close(ours, pipeline_out, rtol=1e-5, atol=1e-5)
        no_rotary = adapter.denoiser(hidden_states=latents, encoder_hidden_states=kwargs["encoder_hidden_states"],
                                     timestep=kwargs["timestep"], image_rotary_emb=None).sample
    assert (no_rotary - ours).abs().max() > 1e-3  # the rotary tables matter


def test_ddim_step_uses_cogvideox_alphas_and_rollout_log_probs():
    adapter = build_tiny_adapter("cogvideox", scheduler={"rescale_betas_zero_snr": False})
    sched = adapter.sampling_scheduler(4)
    assert sched.timesteps.tolist() == [999, 749, 499, 249]  # trailing spacing
    latents, _, cond = fixed_inputs(adapter)
    t = 499
    with torch.no_grad():
        v = adapter.forward(latents, t, cond)
    prev, logp = adapter.sampler_step(sched, v, t, latents, noise_level=1.0, generator=gen(0))
    # Independent float64 DDIM-with-eta=1 on CogVideoX's shifted schedule (v-prediction).
    abar = shifted_alphas_cumprod(3.0)
    a_t, a_p = abar[499].item(), abar[249].item()
    x, vd = latents.double(), v.double()
    x0 = math.sqrt(a_t) * x - math.sqrt(1 - a_t) * vd
    eps = math.sqrt(a_t) * vd + math.sqrt(1 - a_t) * x
    var = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
    mean = math.sqrt(a_p) * x0 + math.sqrt(1 - a_p - var) * eps
    expected = (-((prev.double() - mean) ** 2) / (2 * var) - 0.5 * math.log(var) - 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(logp.double(), expected.mean(dim=(1, 2, 3, 4)), rtol=1e-4, atol=1e-4)
    _, again = adapter.sampler_step(sched, v, t, latents, noise_level=1.0, prev_sample=prev)
    assert torch.equal(again, logp)
    # With a vanishing eta the kernel's mean is CogVideoX's own (deterministic) DDIM step.
    near_ode, _ = adapter.sampler_step(sched, v, t, latents, noise_level=1e-6, generator=gen(0))
    torch.testing.assert_close(near_ode, sched.step(v, t, latents).prev_sample, rtol=1e-4, atol=1e-4)

    chain = sample(adapter, PROMPTS, num_inference_steps=3, guidance_scale=2.0, generator=gen(0))
    assert chain.latents.shape == (2, 3, 3, 4, 4, 4) and chain.images.shape == (2, 9, 3, 16, 16)
    assert chain.log_probs.shape == (2, 3) and torch.isfinite(chain.log_probs).all()


def test_reference_is_the_base_network():
    fc.check_reference_is_base("cogvideox")


def test_attention_backends():
    fc.check_attention_errors("cogvideox")


def test_saved_lora_loads_in_the_diffusers_pipeline_and_changes_its_output(tmp_path):
    adapter, _ = fc.lora_adapter("cogvideox")  # rank 4, alpha 8, random B
    latents, t, cond = fixed_inputs(adapter)
    with torch.no_grad():
        tuned = adapter.forward(latents, t, cond)
    adapter.save_lora(tmp_path)

    pipe = build_tiny_pipeline("cogvideox", seed=0)
    rotary = adapter.rotary_embeddings(latents)
    kwargs = dict(num_inference_steps=2, guidance_scale=2.0, latents=latents, output_type="latent")

    def transformer_out():
        return pipe.transformer(hidden_states=latents, encoder_hidden_states=cond["prompt_embeds"], timestep=t,
                                image_rotary_emb=rotary).sample

    with torch.no_grad():
        base, base_video = transformer_out(), pipe(PROMPTS, **kwargs).frames
        pipe.load_lora_weights(str(tmp_path))
        loaded, loaded_video = transformer_out(), pipe(PROMPTS, **kwargs).frames
    torch.testing.assert_close(loaded, tuned, rtol=1e-5, atol=1e-5)
    assert (loaded - base).abs().max() > 1e-2
    assert (loaded_video - base_video).abs().max() > 1e-2


def test_save_pretrained_merges_lora_and_reloads_with_family_detection(tmp_path):
    adapter, _ = fc.lora_adapter("cogvideox")
    latents, t, cond = fixed_inputs(adapter)
    with torch.no_grad():
        tuned = adapter.forward(latents, t, cond)
    adapter.save_pretrained(tmp_path)
    assert isinstance(DiffusionPipeline.from_pretrained(str(tmp_path)), CogVideoXPipeline)
    loaded = load_adapter(str(tmp_path))
    assert isinstance(loaded, CogVideoXAdapter)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward(latents, t, loaded.encode_prompt(PROMPTS)), tuned,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_vae_memory_switches_from_the_model_config(monkeypatch):
    """``model.vae_tiling`` / ``model.vae_slicing`` turn on the VAE's own switches; slicing decodes the
    batch one video at a time with the same result (tiling needs the real 8x VAE's tile sizes: the
    tiny VAE only checks the switch); a VAE without the switch is a one-line error."""
    import types

    import pytest
    import torch

    import diffalign.pipelines.models as models
    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.models import ModelConfig, load_model, use_vae_memory_switches
    from diffalign.pipelines.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline("cogvideox")
    monkeypatch.setattr(models, "load_adapter", lambda *a, **k: adapter_for(pipe))
    adapter = load_model(ModelConfig(pretrained="tiny", vae_tiling=True, vae_slicing=True))
    assert adapter.vae.use_tiling and adapter.vae.use_slicing
    adapter.vae.disable_tiling()
    plain = adapter_for(build_tiny_pipeline("cogvideox"))
    assert not plain.vae.use_slicing
    latents = torch.randn(2, 3, plain.vae.config.latent_channels, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(adapter.decode_latents(latents), plain.decode_latents(latents), atol=1e-5)
    with pytest.raises(ValueError, match=r"model.vae_slicing: the VAE of this pipeline \(SimpleNamespace\) has no enable_slicing\(\)"):
        use_vae_memory_switches(types.SimpleNamespace(vae=types.SimpleNamespace()), slicing=True)
    # an adapter given to a trainer in Python gets the same switches from its model section
    from diffalign.pipelines.models import configure_adapter

    given = adapter_for(build_tiny_pipeline("cogvideox"))
    assert not (given.vae.use_tiling or given.vae.use_slicing)
    configure_adapter(given, ModelConfig(pretrained="tiny", vae_tiling=True, vae_slicing=True))
    assert given.vae.use_tiling and given.vae.use_slicing
