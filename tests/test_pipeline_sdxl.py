"""The ``sdxl`` adapter (StableDiffusionXLPipeline: two encoders, pooled embeds, time ids)."""
import family_checks as fc
import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from diffalign.pipelines import get_adapter_class
from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.pipelines.sdxl import SDXLAdapter
from diffalign.pipelines.tiny import build_tiny_adapter, build_tiny_pipeline


def test_training_step_path():
    fc.check_training_step("sdxl")


def test_noise_and_target_v_prediction():
    fc.check_noise_and_target("sdxl", "v_prediction")


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_adapter_reproduces_pipeline_call(guidance):
    # with guidance the pipeline's unconditional branch is all zeros (force_zeros_for_empty_prompt)
    fc.check_matches_pipeline_call("sdxl", guidance)


def test_adapter_reproduces_pipeline_call_at_another_size():
    """At 48x64 (not the default 32x32) the pipeline conditions on time ids (48, 64, 0, 0, 48, 64);
    the adapter's default ids follow the latents' size, so the chains agree (they differed by 0.31)."""
    fc.check_matches_pipeline_call("sdxl", 4.0, size=(48, 64))


def test_time_ids_follow_the_latent_size_unless_given():
    adapter = build_tiny_adapter("sdxl")
    cond = adapter.encode_prompt(fc.PROMPTS[:1])
    sized = adapter.encode_prompt(fc.PROMPTS[:1], original_size=(64, 48), target_size=(32, 24))
    mixed = torch.cat([cond["add_time_ids"], sized["add_time_ids"]])
    x = torch.zeros(2, *adapter.latent_shape(48, 64))
    assert adapter.time_ids_for(x, mixed).tolist() == [[48, 64, 0, 0, 48, 64], [64, 48, 0, 0, 32, 24]]
    default = torch.zeros(1, *adapter.latent_shape(32, 32))
    assert torch.equal(adapter.time_ids_for(default, cond["add_time_ids"]), cond["add_time_ids"])


def test_sampler_step_and_chain():
    fc.check_sampler_step_and_chain("sdxl")


def test_reference_is_the_base_network():
    fc.check_reference_is_base("sdxl")


@pytest.mark.slow
def test_lora_is_loaded_by_diffusers(tmp_path):
    fc.check_lora_loads_in_diffusers("sdxl", tmp_path)


@pytest.mark.slow
def test_save_pretrained_and_family_detection(tmp_path):
    fc.check_save_pretrained("sdxl", StableDiffusionXLPipeline, tmp_path)


def test_attention_backend_errors():
    fc.check_attention_errors("sdxl")


def test_conditioning_keys_time_ids_and_cache(tmp_path):
    assert get_adapter_class("sdxl") is SDXLAdapter
    adapter = build_tiny_adapter("sdxl", model_max_length=16)
    cond = adapter.encode_prompt(fc.PROMPTS)
    assert cond["prompt_embeds"].shape == (2, 16, 64)  # 32 + 32 hidden sizes concatenated
    assert cond["pooled_prompt_embeds"].shape == (2, 32)
    assert cond["add_time_ids"].tolist() == [[32, 32, 0, 0, 32, 32]] * 2
    # encoder 1 part = penultimate hidden state of text_encoder; pooled = text_encoder_2 projection
    ids = adapter.pipe.tokenizer(fc.PROMPTS, padding="max_length", max_length=16, truncation=True,
                                 return_tensors="pt").input_ids
    ids_2 = adapter.pipe.tokenizer_2(fc.PROMPTS, padding="max_length", max_length=16, truncation=True,
                                     return_tensors="pt").input_ids
    with torch.no_grad():
        h1 = adapter.pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        pooled = adapter.pipe.text_encoder_2(ids_2).text_embeds
    torch.testing.assert_close(cond["prompt_embeds"][..., :32], h1)
    torch.testing.assert_close(cond["pooled_prompt_embeds"], pooled)
    sized = adapter.encode_prompt(fc.PROMPTS[:1], original_size=(64, 48), target_size=(32, 24),
                                  crops_coords_top_left=(4, 2))
    assert sized["add_time_ids"].tolist() == [[64, 48, 4, 2, 32, 24]]
    # the embedding cache on disk keeps the time ids
    cond.save(tmp_path / "emb.safetensors")
    back = PromptEmbeds.load(tmp_path / "emb.safetensors")
    assert set(back.keys()) == {"prompt_embeds", "pooled_prompt_embeds", "add_time_ids"}
    torch.testing.assert_close(back["add_time_ids"], cond["add_time_ids"])
    # the time ids reach the network
    x, t = fc.fixed_inputs(adapter)
    changed = PromptEmbeds({**cond.tensors, "add_time_ids": sized["add_time_ids"].repeat(2, 1)})
    with torch.no_grad():
        assert (adapter.forward(x, t, cond) - adapter.forward(x, t, changed)).abs().max() > 1e-4


def test_negative_prompt_zeros_like_the_pipeline():
    adapter = build_tiny_adapter("sdxl")
    zeros = adapter.encode_negative_prompt(None, 3)
    assert len(zeros) == 3 and zeros["prompt_embeds"].abs().sum() == 0 and zeros["pooled_prompt_embeds"].abs().sum() == 0
    assert zeros["add_time_ids"].tolist() == [[32, 32, 0, 0, 32, 32]] * 3
    empty = adapter.encode_negative_prompt("", 1)  # an explicit prompt is encoded, as in diffusers
    assert empty["prompt_embeds"].abs().sum() > 0


def test_fp16_pipeline_keeps_vae_in_fp32_per_force_upcast():
    pipe = build_tiny_pipeline("sdxl")
    adapter = SDXLAdapter(pipe, dtype=torch.float16)
    assert adapter.dtype == torch.float16 and adapter.vae.dtype == torch.float32
    images = adapter.generate(fc.PROMPTS[0], num_inference_steps=2, output_type="pt", generator=fc.seeded(0)).images
    assert torch.isfinite(images).all() and adapter.vae.dtype == torch.float32
    latents = adapter.encode_pixels(torch.rand(1, 3, 32, 32, generator=fc.seeded(1)), generator=fc.seeded(2))
    assert latents.dtype == torch.float16
    adapter.to(dtype=torch.float16)
    assert adapter.vae.dtype == torch.float32
    plain = build_tiny_pipeline("sdxl")
    plain.vae.register_to_config(force_upcast=False)
    assert SDXLAdapter(plain, dtype=torch.float16).vae.dtype == torch.float16
