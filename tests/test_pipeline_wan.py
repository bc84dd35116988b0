"""Wan adapter on the tiny real WanPipeline: UMT5, the 3D causal VAE, flow matching with shift, frames on dim 1."""
import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import pytest
import torch
from diffusers import UniPCMultistepScheduler, WanPipeline

from diffalign.pipelines import detect_family
from diffalign.pipelines.tiny import build_tiny_adapter, build_tiny_pipeline
from diffalign.pipelines.wan import WanAdapter

gen = fc.seeded
SIZE = dict(height=32, width=32, num_frames=9)


@pytest.fixture(scope="module")
def adapter():
    a = build_tiny_adapter("wan")
    a.max_sequence_length = 16
    a.default_video_size = (32, 32, 9)
    return a


def to_pipe(latents):  # the pipeline's latents are [B, C, F, h, w]
    return latents.permute(0, 2, 1, 3, 4)


def start_noise(adapter, batch=1, seed=7):
    return torch.randn(batch, *adapter.latent_shape(32, 32, 9), generator=gen(seed))


def test_video_latents_layout_and_vae_normalisation(adapter):
    assert isinstance(adapter, WanAdapter) and adapter.modality == "video"
    assert adapter.latent_shape(32, 32, 9) == (3, 4, 4, 4)  # F = 1 + (9 - 1) / 4, 8x spatial
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        adapter.latent_shape(32, 32, 8)
    with pytest.raises(ValueError, match="multiples of 16"):
        adapter.latent_shape(24, 32, 9)
    pixels = torch.rand(1, 9, 3, 32, 32, generator=gen(0))
    with torch.no_grad():
        z = adapter.encode_pixels(pixels, generator=gen(1))
        raw = adapter.vae.encode(to_pipe(pixels * 2 - 1)).latent_dist.sample(gen(1))
    mean = torch.tensor([-0.7571, -0.7089, -0.9113, 0.1075]).view(1, 4, 1, 1, 1)
    std = torch.tensor([2.8184, 1.4541, 2.3275, 2.6558]).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(z, to_pipe((raw - mean) / std))
    with torch.no_grad():
        video = adapter.decode_latents(z)
        expected = adapter.vae.decode(raw, return_dict=False)[0]  # the pipeline's decode of the same latents
    assert video.shape == (1, 9, 3, 32, 32)
    torch.testing.assert_close(video, to_pipe((expected / 2 + 0.5).clamp(0, 1)), rtol=1e-5, atol=1e-5)


def test_chain_at_noise_level_zero_is_the_pipeline_with_cfg(adapter):
    start = start_noise(adapter)
    kwargs = dict(guidance_scale=1.0, max_sequence_length=16, **SIZE)
    fc.check_flow_chain_matches_pipeline(adapter, start, to_pipe, kwargs)
    # with classifier-free guidance against the empty negative prompt, as the pipeline does it
    with torch.no_grad():
        expected = adapter.pipe(fc.PROMPTS[:1], latents=to_pipe(start), num_inference_steps=2, guidance_scale=4.0,
                                output_type="latent", max_sequence_length=16, **SIZE).frames
        from diffalign.pipelines.sampling import sample

        chain = sample(adapter, fc.PROMPTS[:1], num_inference_steps=2, guidance_scale=4.0, noise_level=0.0,
                       latents=start, decode=False, **SIZE)
    torch.testing.assert_close(to_pipe(chain.final), expected, rtol=1e-5, atol=1e-5)


def test_training_forward_and_per_segment_errors_split_frames(adapter):
    x = start_noise(adapter, batch=2, seed=1)
    errors, parts = fc.check_flow_training_errors(adapter, x)
    assert errors.shape == (2,)
    # DenseDPO: segments split the latent frames (dim 1): 3 frames -> one error per frame here
    seg, seg_parts = fc.check_flow_training_errors(adapter, x, segments=3)
    assert seg.shape == (2, 3)
    err = (seg_parts["prediction"] - seg_parts["target"]) ** 2
    torch.testing.assert_close(seg[:, 1], err[:, 1].reshape(2, -1).mean(1))
    torch.testing.assert_close(seg.mean(1), errors)  # equal-sized segments average to the whole


def test_unipc_checkpoint_trains_and_samples_with_its_flow_shift():
    pipe = build_tiny_pipeline("wan")
    pipe.scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    adapter = WanAdapter(pipe)
    assert adapter.noise_scheduler.config.shift == 5.0
    sigma = adapter.sampling_scheduler(4).sigmas[:-1]
    # FlowMatchEuler's grid: linspace(1, the shifted sigma of timestep 1, N), then shifted: 5 s / (1 + 4 s)
    base = torch.linspace(1.0, 5 * 0.001 / (1 + 4 * 0.001), 4)
    torch.testing.assert_close(sigma, 5 * base / (1 + 4 * base), rtol=1e-5, atol=1e-5)


def test_two_expert_wan22_is_refused_with_the_reason():
    pipe = build_tiny_pipeline("wan")
    pipe.register_modules(transformer_2=pipe.transformer)
    with pytest.raises(ValueError, match="transformer_2"):
        WanAdapter(pipe)


def test_detected_from_model_index(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    assert detect_family(str(tmp_path)) == "wan"


def test_lora_round_trip_through_load_lora_weights(tmp_path, adapter):
    fc.check_flow_lora_round_trip("wan", tmp_path, start_noise(adapter), to_pipe,
                                  dict(guidance_scale=1.0, max_sequence_length=16, **SIZE), max_sequence_length=16)


@pytest.mark.slow
def test_save_pretrained_reloads(tmp_path, adapter):
    fc.check_flow_save_pretrained("wan", WanPipeline, tmp_path, start_noise(adapter, 2), torch.tensor([900.0, 250.0]))
