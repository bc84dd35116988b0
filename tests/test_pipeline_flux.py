"""FLUX.1 adapter on the tiny real FluxPipeline: packed latents, embedded guidance, dynamic shift, LoRA I/O."""
import math
import types

import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import numpy as np
import pytest
import torch
from diffusers import FluxPipeline

from diffalign.pipelines import detect_family
from diffalign.pipelines.flow import calculate_shift
from diffalign.pipelines.flux import FluxAdapter
from diffalign.pipelines.sampling import sample
from diffalign.pipelines.tiny import build_tiny_adapter

PROMPTS = fc.PROMPTS
gen = fc.seeded


@pytest.fixture(scope="module")
def adapter():
    a = build_tiny_adapter("flux")
    a.max_sequence_length = 16  # short T5 sequences keep the checks fast; the pipeline is called alike
    return a


def start_noise(adapter, batch=1, seed=7):
    return torch.randn(batch, *adapter.latent_shape(32, 32), generator=gen(seed))


def test_packing_ids_and_shapes(adapter):
    assert isinstance(adapter, FluxAdapter) and isinstance(adapter.pipe, FluxPipeline)
    assert adapter.latent_shape(32, 32) == (4, 16, 16) and adapter.latent_shape(32, 64) == (4, 16, 32)
    with pytest.raises(ValueError, match="multiples of 4"):
        adapter.latent_shape(30, 32)
    x = torch.randn(2, 4, 4, 6, generator=gen(0))
    packed = adapter.pack_latents(x)
    assert packed.shape == (2, 2 * 3, 16)
    # token (row 1, col 2) holds the 2x2 patch x[:, c, 2:4, 4:6], channel-major
    torch.testing.assert_close(packed[:, 1 * 3 + 2].reshape(2, 4, 2, 2), x[:, :, 2:4, 4:6])
    torch.testing.assert_close(adapter.unpack_latents(packed, 4, 6), x)
    ids = adapter.image_ids(4, 6, "cpu")
    assert ids.shape == (6, 3) and ids[5].tolist() == [0.0, 1.0, 2.0]


def test_dynamic_shift_follows_the_image_sequence_length(adapter):
    # 32 px -> 16x16 latents -> 8x8 = 64 packed tokens; 64 px -> 256 tokens (mu = base_shift 0.5)
    assert adapter.image_seq_len(32, 32) == 64 and adapter.image_seq_len(64, 64) == 256
    assert calculate_shift(256) == pytest.approx(0.5) and calculate_shift(4096) == pytest.approx(1.15)
    for side in (32, 64):
        sched = adapter.sampling_scheduler(4, height=side, width=side)
        mu = 0.5 + (adapter.image_seq_len(side, side) - 256) * 0.65 / 3840
        base = np.linspace(1.0, 0.25, 4)  # the pipeline's sigmas, then the exponential time shift
        expected = math.exp(mu) / (math.exp(mu) + (1 / base - 1))
        torch.testing.assert_close(sched.sigmas[:-1].double(), torch.tensor(expected), rtol=1e-5, atol=1e-6)
        assert sched.sigmas[-1] == 0


def test_chain_at_noise_level_zero_is_the_pipeline_with_embedded_guidance(adapter):
    start = start_noise(adapter)
    kwargs = dict(guidance_scale=adapter.embedded_guidance, height=32, width=32, max_sequence_length=16)
    fc.check_flow_chain_matches_pipeline(adapter, start, adapter.pack_latents, kwargs)
    # the guidance value reaches the transformer: another embedded guidance, another output
    cond = adapter.encode_prompt(PROMPTS[:1])
    with torch.no_grad():
        a = adapter.forward(start, torch.tensor([500.0]), cond)
        adapter.embedded_guidance = 1.0
        b = adapter.forward(start, torch.tensor([500.0]), cond)
        adapter.embedded_guidance = 3.5
    assert (a - b).abs().max() > 1e-4


def test_no_classifier_free_guidance_unless_true_cfg(adapter):
    start = start_noise(adapter)
    run = dict(num_inference_steps=2, noise_level=0.0, latents=start, decode=False)
    with torch.no_grad():
        plain = sample(adapter, PROMPTS[:1], guidance_scale=1.0, **run).final
        asked = sample(adapter, PROMPTS[:1], guidance_scale=4.0, **run).final  # guidance-distilled: ignored
        adapter.true_cfg = True
        try:
            cfg = sample(adapter, PROMPTS[:1], guidance_scale=4.0, **run).final
            expected = adapter.pipe(PROMPTS[:1], negative_prompt="", true_cfg_scale=4.0, guidance_scale=3.5,
                                    latents=adapter.pack_latents(start), num_inference_steps=2, output_type="latent",
                                    height=32, width=32, max_sequence_length=16).images
        finally:
            adapter.true_cfg = False
    torch.testing.assert_close(asked, plain)
    assert (cfg - plain).abs().max() > 1e-4
    torch.testing.assert_close(adapter.pack_latents(cfg), expected, rtol=1e-5, atol=1e-5)


def test_training_forward_is_the_pipelines_transformer_call(adapter):
    x = start_noise(adapter, batch=2, seed=1)
    errors, parts = fc.check_flow_training_errors(adapter, x)
    assert errors.shape == (2,) and parts["timesteps"].dtype == torch.float32
    cond = adapter.encode_prompt(PROMPTS)
    t = parts["timesteps"]
    with torch.no_grad():  # exactly the call FluxPipeline.__call__ makes
        raw = adapter.pipe.transformer(
            hidden_states=adapter.pack_latents(x), timestep=t / 1000, guidance=torch.full((2,), 3.5),
            pooled_projections=cond["pooled_prompt_embeds"], encoder_hidden_states=cond["prompt_embeds"],
            txt_ids=torch.zeros(16, 3), img_ids=adapter.pipe._prepare_latent_image_ids(2, 8, 8, "cpu", torch.float32),
            return_dict=False)[0]
        torch.testing.assert_close(adapter.forward(x, t, cond), adapter.unpack_latents(raw, 16, 16))


@pytest.mark.slow
def test_lora_round_trip_through_load_lora_weights(tmp_path):
    probe = build_tiny_adapter("flux")
    start = start_noise(probe)
    fc.check_flow_lora_round_trip("flux", tmp_path, start, probe.pack_latents,
                                  dict(guidance_scale=3.5, height=32, width=32, max_sequence_length=16),
                                  max_sequence_length=16)


def test_detected_from_model_index(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    assert detect_family(str(tmp_path)) == "flux"


@pytest.mark.slow
def test_save_pretrained_reloads(tmp_path):
    probe = build_tiny_adapter("flux")
    fc.check_flow_save_pretrained("flux", FluxPipeline, tmp_path, start_noise(probe, 2), torch.tensor([900.0, 250.0]))


def test_model_config_keys_set_embedded_guidance_and_true_cfg(adapter):
    from diffalign.config import ConfigError, load_config
    from diffalign.pipelines.models import configure_adapter
    from diffalign.train.offline import OfflineConfig

    cfg = load_config(OfflineConfig, None, ["model.embedded_guidance=2.0", "model.true_cfg=true"])
    x, t = start_noise(adapter, batch=2, seed=1), torch.tensor([900.0, 250.0])
    cond = adapter.encode_prompt(PROMPTS)
    try:
        with torch.no_grad():
            configure_adapter(adapter, cfg.model)
            assert adapter.embedded_guidance == 2.0 and adapter.true_cfg is True
            got = adapter.forward(x, t, cond)  # the training forward feeds the configured value
            raw = adapter.pipe.transformer(
                hidden_states=adapter.pack_latents(x), timestep=t / 1000, guidance=torch.full((2,), 2.0),
                pooled_projections=cond["pooled_prompt_embeds"], encoder_hidden_states=cond["prompt_embeds"],
                txt_ids=torch.zeros(16, 3), img_ids=adapter.image_ids(16, 16, "cpu"), return_dict=False)[0]
        torch.testing.assert_close(got, adapter.unpack_latents(raw, 16, 16))
    finally:
        adapter.embedded_guidance, adapter.true_cfg = 3.5, False
    unset = load_config(OfflineConfig, None, [])  # unset keys leave the adapter's defaults
    assert configure_adapter(adapter, unset.model).embedded_guidance == 3.5 and adapter.true_cfg is False
    with pytest.raises(ValueError, match="^model.embedded_guidance: the sd family has no embedded_guidance setting"):
        configure_adapter(types.SimpleNamespace(family="sd"), cfg.model)  # an adapter without the setting
    with pytest.raises(ConfigError, match="model.embedded_guidance: must be >= 0"):
        load_config(OfflineConfig, None, ["model.embedded_guidance=-1"])
