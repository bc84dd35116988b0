"""The ``sd`` adapter (StableDiffusionPipeline, epsilon and v-prediction) on the tiny pipeline."""
from unittest import mock

import family_checks as fc
import pytest
import torch
from diffusers import StableDiffusionPipeline

from diffalign.pipelines import get_adapter_class
from diffalign.pipelines.attention import current_attention_backend
from diffalign.pipelines.sd import SDAdapter
from diffalign.pipelines.tiny import build_tiny_adapter, build_tiny_pipeline


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_training_step_path(prediction_type):
    fc.check_training_step("sd", prediction_type=prediction_type)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_noise_and_target(prediction_type):
    fc.check_noise_and_target("sd", prediction_type)


@pytest.mark.parametrize("prediction_type,guidance", [("epsilon", 1.0), ("epsilon", 4.0), ("v_prediction", 4.0)])
def test_adapter_reproduces_pipeline_call(prediction_type, guidance):
    fc.check_matches_pipeline_call("sd", guidance, prediction_type=prediction_type)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sampler_step_and_chain(prediction_type):
    fc.check_sampler_step_and_chain("sd", prediction_type=prediction_type)


def test_reference_is_the_base_network():
    fc.check_reference_is_base("sd")


def test_lora_is_loaded_by_diffusers(tmp_path):
    fc.check_lora_loads_in_diffusers("sd", tmp_path)


@pytest.mark.slow
def test_save_pretrained_and_family_detection(tmp_path):
    fc.check_save_pretrained("sd", StableDiffusionPipeline, tmp_path)


def test_attention_backend_errors():
    fc.check_attention_errors("sd")


@pytest.mark.slow
def test_registry_and_tiny_determinism():
    assert get_adapter_class("sd") is SDAdapter
    a, b = build_tiny_pipeline("sd", seed=3), build_tiny_pipeline("sd", seed=3)
    c = build_tiny_pipeline("sd", seed=4)
    assert torch.equal(a.unet.conv_in.weight, b.unet.conv_in.weight)
    assert torch.equal(a.text_encoder.get_input_embeddings().weight,
                       b.text_encoder.get_input_embeddings().weight)
    assert not torch.equal(a.unet.conv_in.weight, c.unet.conv_in.weight)
    assert build_tiny_pipeline("sd", prediction_type="v_prediction").scheduler.config.prediction_type == "v_prediction"
    with pytest.raises(TypeError, match="StableDiffusionPipeline"):
        SDAdapter(build_tiny_pipeline("sdxl"))


def test_encode_prompt_batched_and_max_length():
    adapter = build_tiny_adapter("sd", model_max_length=16)
    long_prompt = " ".join(["red circle"] * 40)
    both = adapter.encode_prompt([fc.PROMPTS[0], long_prompt])
    assert list(both.keys()) == ["prompt_embeds"] and both["prompt_embeds"].shape == (2, 16, 32)
    alone = adapter.encode_prompt([long_prompt])
    torch.testing.assert_close(both["prompt_embeds"][1:], alone["prompt_embeds"])
    assert (both["prompt_embeds"][0] - both["prompt_embeds"][1]).abs().max() > 1e-3
    cache = {}
    cached = adapter.encode_prompt_cached([long_prompt, fc.PROMPTS[0], long_prompt], cache)
    assert set(cache) == {long_prompt, fc.PROMPTS[0]}
    torch.testing.assert_close(cached["prompt_embeds"][2], alone["prompt_embeds"][0])


def test_pixels_latents_scaling_and_shift():
    adapter = build_tiny_adapter("sd")
    vae, sf = adapter.vae, adapter.vae.config.scaling_factor
    latents = torch.randn(2, 4, 16, 16, generator=fc.seeded(0))
    with torch.no_grad():
        images = adapter.decode_latents(latents)
        # diffusers' own decode + postprocess
        expected = adapter.pipe.image_processor.postprocess(vae.decode(latents / sf).sample, output_type="pt")
    torch.testing.assert_close(images, expected)
    pixels = torch.rand(2, 3, 32, 32, generator=fc.seeded(1))
    with torch.no_grad():
        z = adapter.encode_pixels(pixels, generator=fc.seeded(2))
        posterior = vae.encode(pixels * 2 - 1).latent_dist
        vae.register_to_config(shift_factor=0.25)
        z_shift = adapter.encode_pixels(pixels, generator=fc.seeded(2))
        back = adapter.decode_latents(z_shift)
        expected_back = adapter.pipe.image_processor.postprocess(vae.decode(z_shift / sf + 0.25).sample, output_type="pt")
    # z / scaling_factor is a draw from the VAE posterior: standardised, it is ~ N(0, 1)
    standard = (z / sf - posterior.mean) / posterior.std
    assert abs(standard.mean().item()) < 0.1 and abs(standard.std().item() - 1) < 0.1
    torch.testing.assert_close(z_shift, z - 0.25 * sf)
    torch.testing.assert_close(back, expected_back)
    assert adapter.latent_shape(64, 48) == (4, 32, 24)
    with pytest.raises(ValueError, match="multiples of 2"):
        adapter.latent_shape(33, 32)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        adapter.encode_pixels(torch.rand(3, 32, 32))
    assert adapter.default_resolution() == 32


def test_flash_backend_forces_the_flash_sdpa_kernel_and_sdpa_restores():
    """The hook mechanism, exercised on CPU (PyTorch has a CPU flash kernel) with CUDA mocked."""
    adapter = build_tiny_adapter("sd")
    cond = adapter.encode_prompt(fc.PROMPTS)
    x, t = fc.fixed_inputs(adapter)
    with torch.no_grad():
        before = adapter.forward(x, t, cond)
    with mock.patch("torch.cuda.is_available", return_value=True):
        adapter.set_attention_backend("flash")
    assert current_attention_backend(adapter.denoiser) == "flash"
    layer = next(m for m in adapter.denoiser.modules() if hasattr(m, "set_processor"))
    seen = []
    layer.register_forward_pre_hook(lambda m, a: seen.append(torch.backends.cuda.math_sdp_enabled()))
    with torch.no_grad():
        flash = adapter.forward(x, t, cond)
    assert seen == [False] and torch.backends.cuda.math_sdp_enabled()  # only inside attention
    torch.testing.assert_close(flash, before, rtol=1e-4, atol=1e-5)
    adapter.set_attention_backend("sdpa")
    with torch.no_grad():
        adapter.forward(x, t, cond)
    assert seen == [False, True] and current_attention_backend(adapter.denoiser) == "sdpa"


def test_channels_last_keeps_the_images_and_changes_the_layout():
    from diffalign.pipelines.models import use_channels_last

    pipe = build_tiny_pipeline("sd")
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=3, guidance_scale=3.0, height=32, width=32, output_type="np")
    before = pipe(["a red circle"], generator=torch.Generator().manual_seed(0), **kw).images
    use_channels_last(pipe)
    conv = pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    after = pipe(["a red circle"], generator=torch.Generator().manual_seed(0), **kw).images
    assert abs(before - after).max() < 1e-4 and before.std() > 0.01
