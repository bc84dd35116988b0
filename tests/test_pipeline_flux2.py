"""FLUX.2 [klein] adapter on the tiny real Flux2KleinPipeline: Qwen3 stacked hidden states, batch-norm
normalised patchified latents, FLUX.2's empirical shift, CFG (undistilled) or none (distilled), LoRA I/O."""
import math

import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import numpy as np
import pytest
import torch
from diffusers import Flux2KleinPipeline

from diffalign.pipelines import detect_family
from diffalign.pipelines.flux2 import Flux2KleinAdapter
from diffalign.pipelines.sampling import sample

gen = fc.seeded
CALL = dict(height=32, width=32, max_sequence_length=32)


@pytest.fixture(scope="module")
def adapter():
    return fc.short_text_adapter("flux2", 32)  # short Qwen3 sequences; the pipeline is called alike


def start_noise(adapter, batch=1, seed=7):
    return fc.start_noise(adapter, 32, 32, batch=batch, seed=seed)


def test_prompt_embeds_stack_three_qwen3_layers(adapter):
    assert isinstance(adapter, Flux2KleinAdapter) and isinstance(adapter.pipe, Flux2KleinPipeline)
    cond = adapter.encode_prompt(["a red circle", "two green triangles left of a star"])
    assert cond["prompt_embeds"].shape == (2, 32, 24)  # padded to max_sequence_length, 3 layers x width 8
    tok = adapter.pipe.tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": "a red circle"}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=False)
    ids = tok(text, return_tensors="pt", padding="max_length", max_length=32, truncation=True)
    with torch.no_grad():
        hidden = adapter.pipe.text_encoder(**ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(cond["prompt_embeds"][0], torch.cat([hidden[9][0], hidden[18][0], hidden[27][0]], -1))


def test_latents_patchified_and_batch_norm_normalised(adapter):
    assert adapter.latent_shape(32, 32) == (16, 8, 8) and adapter.latent_shape(32, 64) == (16, 8, 16)
    with pytest.raises(ValueError, match="multiples of 4"):
        adapter.latent_shape(30, 32)
    pixels = torch.rand(1, 3, 32, 32, generator=gen(0))
    bn = adapter.vae.bn
    with torch.no_grad():
        z = adapter.encode_pixels(pixels, generator=gen(1))
        raw = adapter.vae.encode(pixels * 2 - 1).latent_dist.sample(gen(1))  # [1, 4, 16, 16]
    # channel 4c + 2i + j of the patchified latents holds raw[:, c, i::2, j::2]
    patched = torch.cat([raw[:, c:c + 1, i::2, j::2] for c in range(4) for i in range(2) for j in range(2)], 1)
    mean, var = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
    torch.testing.assert_close(z, (patched - mean) / torch.sqrt(var + 1e-4))
    torch.testing.assert_close(adapter.vae_latents(z), raw, rtol=1e-5, atol=1e-5)


def test_empirical_shift_depends_on_tokens_and_steps(adapter):
    assert adapter.image_seq_len(32, 32) == 64 and adapter.image_seq_len(64, 32) == 128
    for steps, side in ((4, 32), (8, 32), (4, 64)):
        seq = adapter.image_seq_len(side, side)
        m200, m10 = 0.00016927 * seq + 0.45666666, 8.73809524e-05 * seq + 1.89833333  # FLUX.2's fit
        mu = m200 + (steps - 200) * (m200 - m10) / 190.0
        base = np.linspace(1.0, 1 / steps, steps)
        sched = adapter.sampling_scheduler(steps, height=side, width=side)
        expected = math.exp(mu) / (math.exp(mu) + (1 / base - 1))
        torch.testing.assert_close(sched.sigmas[:-1].double(), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_chain_at_noise_level_zero_is_the_pipeline(adapter):
    fc.check_flow_chain_matches_pipeline(adapter, start_noise(adapter), lambda x: x, dict(CALL, guidance_scale=1.0),
                                         from_chain=adapter.vae_latents)


def test_cfg_against_the_empty_prompt_unless_distilled(adapter):
    start = start_noise(adapter)
    run = dict(num_inference_steps=2, noise_level=0.0, latents=start, decode=False)
    with torch.no_grad():
        plain = sample(adapter, fc.PROMPTS[:1], guidance_scale=1.0, **run).final
        cfg = sample(adapter, fc.PROMPTS[:1], guidance_scale=4.0, **run).final
        expected = adapter.pipe(prompt=fc.PROMPTS[:1], guidance_scale=4.0, latents=start, num_inference_steps=2,
                                output_type="latent", **CALL).images
        adapter.pipe.register_to_config(is_distilled=True)
        try:
            distilled = sample(adapter, fc.PROMPTS[:1], guidance_scale=4.0, **run).final
        finally:
            adapter.pipe.register_to_config(is_distilled=False)
    assert (cfg - plain).abs().max() > 1e-4
    torch.testing.assert_close(adapter.vae_latents(cfg), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(distilled, plain)


def test_training_forward_is_the_pipelines_transformer_call(adapter):
    x = start_noise(adapter, batch=2, seed=1)
    errors, parts = fc.check_flow_training_errors(adapter, x)
    assert errors.shape == (2,) and parts["timesteps"].dtype == torch.float32
    cond = adapter.encode_prompt(fc.PROMPTS)
    t = parts["timesteps"]
    pipe = adapter.pipe
    with torch.no_grad():  # exactly the call Flux2KleinPipeline.__call__ makes, then its unpacking
        packed, ids = pipe.prepare_latents(2, 4, 32, 32, torch.float32, "cpu", None, latents=x)
        raw = pipe.transformer(hidden_states=packed, timestep=t / 1000, guidance=None,
                               encoder_hidden_states=cond["prompt_embeds"],
                               txt_ids=pipe._prepare_text_ids(cond["prompt_embeds"]), img_ids=ids, return_dict=False)[0]
        torch.testing.assert_close(adapter.forward(x, t, cond), pipe._unpack_latents_with_ids(raw, ids, 8, 8))


def test_detected_from_model_index(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "Flux2KleinPipeline"}')
    assert detect_family(str(tmp_path)) == "flux2"


@pytest.mark.slow
def test_lora_round_trip_through_load_lora_weights(tmp_path, adapter):
    fc.check_flow_lora_round_trip("flux2", tmp_path, start_noise(adapter), lambda x: x, dict(CALL, guidance_scale=1.0),
                                  from_chain=adapter.vae_latents, max_sequence_length=32)


@pytest.mark.slow
def test_save_pretrained_reloads(tmp_path, adapter):
    fc.check_flow_save_pretrained("flux2", Flux2KleinPipeline, tmp_path, start_noise(adapter, 2), torch.tensor([900.0, 250.0]))
