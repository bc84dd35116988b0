"""Qwen-Image adapter on the tiny real QwenImagePipeline: Qwen2.5-VL text (padded, masked), packed
latents with the transformer's patch size, dynamic shift, LoRA I/O."""
import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import pytest
import torch
from diffusers import QwenImagePipeline

from diffalign.pipelines.qwenimage import QwenImageAdapter
from diffalign.pipelines.tiny import build_tiny_adapter
from diffalign.pipelines.tokenizers import qwen2_tokenizer

gen = fc.seeded
CALL = dict(height=32, width=32, max_sequence_length=32)


@pytest.fixture(scope="module")
def adapter():
    a = build_tiny_adapter("qwenimage")
    a.max_sequence_length = 32
    return a


def start_noise(adapter, batch=1, seed=7):
    return torch.randn(batch, *adapter.latent_shape(32, 32), generator=gen(seed))


def test_tiny_tokenizer_gives_the_template_prefix_the_pipeline_drops():
    tokenizer = qwen2_tokenizer()
    prefix = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
              "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n")
    assert len(tokenizer(prefix).input_ids) == 34  # QwenImagePipeline.prompt_template_encode_start_idx
    assert tokenizer.tokenize(" red circle") == ["Ġred", "Ġcircle"]


def test_prompts_are_padded_and_masked_to_one_length(adapter):
    cond = adapter.encode_prompt(["a red circle", "two green triangles left of a star"])
    emb, mask = cond["prompt_embeds"], cond["prompt_embeds_mask"]
    assert emb.shape == (2, 32, 32) and mask.shape == (2, 32)
    lengths = mask.sum(1).tolist()
    assert lengths[0] < lengths[1] and torch.all(emb[0, lengths[0]:] == 0)
    raw, raw_mask = adapter.pipe.encode_prompt(prompt=["a red circle"], max_sequence_length=32)
    assert raw_mask is None and raw.shape[1] == lengths[0]  # the pipeline's unpadded embeddings
    torch.testing.assert_close(emb[:1, : lengths[0]], raw)


def test_latents_normalised_and_packed_with_the_transformer_patch(adapter):
    assert isinstance(adapter, QwenImageAdapter) and not hasattr(adapter.pipe, "patch_size")
    assert adapter.pack == adapter.denoiser.config.patch_size == 2
    assert adapter.latent_shape(32, 32) == (4, 4, 4)
    pixels = torch.rand(1, 3, 32, 32, generator=gen(0))
    with torch.no_grad():
        z = adapter.encode_pixels(pixels, generator=gen(1))
        raw = adapter.vae.encode((pixels * 2 - 1).unsqueeze(2)).latent_dist.sample(gen(1))[:, :, 0]
    mean = torch.tensor([-0.7571, -0.7089, -0.9113, 0.1075]).view(1, 4, 1, 1)
    std = torch.tensor([2.8184, 1.4541, 2.3275, 2.6558]).view(1, 4, 1, 1)
    torch.testing.assert_close(z, (raw - mean) / std)
    x = torch.randn(2, 4, 4, 6, generator=gen(2))
    torch.testing.assert_close(adapter.pack_latents(x), adapter.pipe._pack_latents(x, 2, 4, 4, 6))
    torch.testing.assert_close(adapter.unpack_latents(adapter.pack_latents(x), 4, 6), x)


def test_chain_at_noise_level_zero_is_the_pipeline(adapter):
    fc.check_flow_chain_matches_pipeline(adapter, start_noise(adapter), adapter.pack_latents, CALL)


def test_training_forward(adapter):
    errors, _ = fc.check_flow_training_errors(adapter, start_noise(adapter, batch=2, seed=1))
    assert errors.shape == (2,)


@pytest.mark.slow
def test_lora_round_trip_through_load_lora_weights(tmp_path, adapter):
    fc.check_flow_lora_round_trip("qwenimage", tmp_path, start_noise(adapter), adapter.pack_latents, CALL,
                                  max_sequence_length=32)


@pytest.mark.slow
def test_save_pretrained_reloads(tmp_path, adapter):
    fc.check_flow_save_pretrained("qwenimage", QwenImagePipeline, tmp_path, start_noise(adapter, 2),
                                  torch.tensor([900.0, 250.0]))
