"""Z-Image adapter on the tiny real ZImagePipeline: Qwen3 embeddings (padded, masked, unpadded again for
the transformer), reversed time and negated velocity, the pipeline's CFG convention, LoRA I/O."""
import math

import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import numpy as np
import pytest
import torch
from diffusers import ZImagePipeline

from diffalign.pipelines import detect_family
from diffalign.pipelines.sampling import sample
from diffalign.pipelines.zimage import ZImageAdapter

gen = fc.seeded
# the pipeline's guidance_scale 0 = no CFG (diffalign's 1)
CALL = dict(height=32, width=32, max_sequence_length=32, guidance_scale=0.0)
# different token counts; a tuple: ZImagePipeline.encode_prompt rewrites a list it is given in place
PROMPTS = ("a red circle", "two green triangles left of a blue star")


@pytest.fixture(scope="module")
def adapter():
    return fc.short_text_adapter("zimage", 32)


def start_noise(adapter, batch=1, seed=7):
    return fc.start_noise(adapter, 32, 32, batch=batch, seed=seed)


def test_prompts_padded_and_masked_to_one_length(adapter):
    assert isinstance(adapter, ZImageAdapter) and adapter.latent_shape(32, 32) == (4, 16, 16)
    with pytest.raises(ValueError, match="multiples of 4"):
        adapter.latent_shape(30, 32)
    cond = adapter.encode_prompt(list(PROMPTS))
    emb, mask = cond["prompt_embeds"], cond["prompt_embeds_mask"]
    assert emb.shape == (2, 32, 16) and mask.shape == (2, 32)
    raw, _ = adapter.pipe.encode_prompt(list(PROMPTS), do_classifier_free_guidance=False, max_sequence_length=32)
    lengths = mask.sum(1).tolist()
    assert lengths == [len(r) for r in raw] and lengths[0] < lengths[1]
    for i in range(2):
        torch.testing.assert_close(emb[i, : lengths[i]], raw[i])
        assert torch.all(emb[i, lengths[i]:] == 0)


def test_forward_reverses_time_and_negates_the_output(adapter):
    x = start_noise(adapter, batch=2, seed=1)
    t = torch.tensor([900.0, 250.0])
    cond = adapter.encode_prompt(list(PROMPTS))
    raw, _ = adapter.pipe.encode_prompt(list(PROMPTS), do_classifier_free_guidance=False, max_sequence_length=32)
    with torch.no_grad():
        out = adapter.pipe.transformer(list(x.unsqueeze(2).unbind(0)), torch.tensor([0.1, 0.75]), raw,
                                       return_dict=False)[0]
        torch.testing.assert_close(adapter.forward(x, t, cond), -torch.stack(out)[:, :, 0])


def test_chain_at_noise_level_zero_is_the_pipeline(adapter):
    fc.check_flow_chain_matches_pipeline(adapter, start_noise(adapter, batch=2), lambda x: x, CALL, prompts=list(PROMPTS))


def test_guidance_scale_is_the_pipelines_plus_one(adapter):
    start = start_noise(adapter)
    with torch.no_grad():
        ours = sample(adapter, list(PROMPTS[:1]), num_inference_steps=2, noise_level=0.0, latents=start, decode=False,
                      guidance_scale=4.0).final
        expected = adapter.pipe(prompt=list(PROMPTS[:1]), latents=start, num_inference_steps=2, output_type="latent",
                                **dict(CALL, guidance_scale=3.0)).images
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_dynamic_shift_follows_the_image_sequence_length():
    config = dict(use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256, base_shift=0.5, max_shift=1.15)
    adapter = fc.short_text_adapter("zimage", 32, scheduler=config)
    assert adapter.image_seq_len(32, 32) == 64
    mu = 0.5 + (64 - 16) * 0.65 / 240
    base = np.linspace(1.0, 0.25, 4)
    expected = math.exp(mu) / (math.exp(mu) + (1 / base - 1))
    torch.testing.assert_close(adapter.sampling_scheduler(4, height=32, width=32).sigmas[:-1].double(),
                               torch.tensor(expected), rtol=1e-5, atol=1e-6)
    fc.check_flow_chain_matches_pipeline(adapter, start_noise(adapter), lambda x: x, CALL, steps=2)


def test_training_forward(adapter):
    errors, _ = fc.check_flow_training_errors(adapter, start_noise(adapter, batch=2, seed=1))
    assert errors.shape == (2,)


def test_detected_from_model_index(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "ZImagePipeline"}')
    assert detect_family(str(tmp_path)) == "zimage"


@pytest.mark.slow
def test_lora_round_trip_through_load_lora_weights(tmp_path, adapter):
    fc.check_flow_lora_round_trip("zimage", tmp_path, start_noise(adapter), lambda x: x, CALL, max_sequence_length=32)


@pytest.mark.slow
def test_save_pretrained_reloads(tmp_path, adapter):
    fc.check_flow_save_pretrained("zimage", ZImagePipeline, tmp_path, start_noise(adapter, 2), torch.tensor([900.0, 250.0]))
