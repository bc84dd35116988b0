"""HunyuanVideo 1.5 adapter on the tiny real HunyuanVideo15Pipeline: Qwen2.5-VL + ByT5 glyph text, the
scaled causal-VAE latents with frames on dim 1, the text-to-video condition channels, the guider's CFG,
LoRA I/O through the transformer's ``load_lora_adapter``."""
import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import pytest
import torch
from diffusers import HunyuanVideo15Pipeline

from diffalign.pipelines import LORA_WEIGHT_NAME, detect_family
from diffalign.pipelines.hunyuanvideo15 import HunyuanVideo15Adapter
from diffalign.pipelines.sampling import sample
from diffalign.pipelines.tiny import build_tiny_adapter

gen = fc.seeded
SIZE = dict(height=16, width=16, num_frames=5)


@pytest.fixture(scope="module")
def adapter():
    return build_tiny_adapter("hunyuanvideo15")


def to_pipe(latents):  # the pipeline's latents are [B, C, F, h, w]
    return latents.transpose(1, 2)


def start_noise(adapter, batch=1, seed=7):
    return fc.start_noise(adapter, 16, 16, 5, batch=batch, seed=seed)


def test_video_latents_layout_and_scaling(adapter):
    assert isinstance(adapter, HunyuanVideo15Adapter) and adapter.modality == "video"
    assert adapter.latent_shape(16, 16, 5) == (2, 4, 4, 4)  # F = 1 + (5 - 1) / 4, 4x spatial
    for size, problem in (((16, 16, 6), "1 \\+ 4k"), ((18, 16, 5), "multiples of 4")):
        with pytest.raises(ValueError, match=problem):
            adapter.latent_shape(*size)
    pixels = torch.rand(1, 5, 3, 16, 16, generator=gen(0))
    with torch.no_grad():
        z = adapter.encode_pixels(pixels, generator=gen(1))
        raw = adapter.vae.encode(to_pipe(pixels * 2 - 1)).latent_dist.sample(gen(1))
        video = adapter.decode_latents(z)
        expected = adapter.vae.decode(raw, return_dict=False)[0]
    torch.testing.assert_close(z, to_pipe(raw * 1.03682))
    assert video.shape == (1, 5, 3, 16, 16)
    torch.testing.assert_close(video, to_pipe((expected / 2 + 0.5).clamp(0, 1)), rtol=1e-5, atol=1e-5)


def test_glyph_text_only_for_quoted_words(adapter):
    cond = adapter.encode_prompt(["a red circle", 'a sign that says "hello"'])
    assert cond["prompt_embeds"].shape == (2, 32, 16) and cond["prompt_embeds_2"].shape == (2, 16, 16)
    assert cond["prompt_embeds_mask"].sum(1).min() > 0
    # no quoted text: zero glyph embeddings, all masked; quoted: ByT5 of 'Text "hello". ' (14 bytes + </s>)
    assert torch.all(cond["prompt_embeds_2"][0] == 0) and cond["prompt_embeds_mask_2"][0].sum() == 0
    assert cond["prompt_embeds_mask_2"][1].sum() == 15


def test_chain_at_noise_level_zero_is_the_pipeline(adapter):
    fc.check_flow_chain_matches_pipeline(adapter, start_noise(adapter), to_pipe, SIZE)


def test_cfg_is_the_guiders():
    guided = build_tiny_adapter("hunyuanvideo15", guidance_scale=4.0)  # the checkpoint's guider config
    start = start_noise(guided)
    with torch.no_grad():
        ours = sample(guided, fc.PROMPTS[:1], num_inference_steps=2, noise_level=0.0, latents=start, decode=False,
                      guidance_scale=4.0).final
        plain = sample(guided, fc.PROMPTS[:1], num_inference_steps=2, noise_level=0.0, latents=start, decode=False).final
        expected = guided.pipe(prompt=fc.PROMPTS[:1], latents=to_pipe(start), num_inference_steps=2,
                               output_type="latent", **SIZE).frames
    torch.testing.assert_close(to_pipe(ours), expected, rtol=1e-5, atol=1e-5)
    assert (ours - plain).abs().max() > 1e-4


def test_training_forward_per_segment(adapter):
    errors, _ = fc.check_flow_training_errors(adapter, start_noise(adapter, batch=2, seed=1), segments=2)
    assert errors.shape == (2, 2)


def test_detected_from_model_index(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "HunyuanVideo15Pipeline"}')
    assert detect_family(str(tmp_path)) == "hunyuanvideo15"


@pytest.mark.slow
def test_lora_round_trip_through_load_lora_adapter(tmp_path, adapter):
    assert not hasattr(adapter.pipe, "load_lora_weights")  # loads through pipe.transformer.load_lora_adapter
    fc.check_flow_lora_round_trip("hunyuanvideo15", tmp_path, start_noise(adapter), to_pipe, SIZE)
    # the file alone loads the same way (``diffalign sample PIPE+path/to/file.safetensors``)
    from diffalign.pipelines.generation import load_lora

    pipe = fc.build_tiny_pipeline("hunyuanvideo15")
    load_lora(pipe, str(tmp_path / LORA_WEIGHT_NAME))
    assert any("lora_A" in n for n, _ in pipe.transformer.named_parameters())


@pytest.mark.slow
def test_save_pretrained_reloads(tmp_path, adapter):
    fc.check_flow_save_pretrained("hunyuanvideo15", HunyuanVideo15Pipeline, tmp_path, start_noise(adapter, 2),
                                  torch.tensor([900.0, 250.0]), reencode=False)
