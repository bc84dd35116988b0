"""LTX-2 adapter on the tiny real LTX2Pipeline: Gemma 3 + text connectors, the normalised causal-VAE latents
with frames on dim 1, packing into the transformer's tokens, the video-token shift, the pipeline's x0-space
CFG with guidance rescale, and the video-only transformer call (empty audio stream, no audio-video
cross-attention) against the pipeline's own loop run with that call."""
import contextlib

import diffalign  # noqa: F401  (compat shim first)
import family_checks as fc
import pytest
import torch
from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel

from diffalign.pipelines import detect_family
from diffalign.pipelines.flow import calculate_shift
from diffalign.pipelines.ltx2 import LTX2Adapter
from diffalign.pipelines.sampling import sample
from diffalign.pipelines.tiny import build_tiny_adapter

gen = fc.seeded
#: the pipeline's guidance rescale takes a std over the empty audio track (a harmless torch warning)
pytestmark = pytest.mark.filterwarnings(r"ignore:std\(\):UserWarning")
SIZE = dict(height=32, width=32, num_frames=9)
#: the pipeline call the chain reproduces: a one-frame audio track ([B, C, 1, mel]; the video-only model's video does
#: not depend on it), no STG, short text.
CALL = dict(audio_latents=torch.zeros(1, 2, 1, 4), stg_scale=0.0, audio_stg_scale=0.0, max_sequence_length=16, **SIZE)


@pytest.fixture(scope="module")
def adapter():
    a = build_tiny_adapter("ltx2")
    a.max_sequence_length = 16
    a.default_video_size = (32, 32, 9)
    return a


@contextlib.contextmanager
def video_only_transformer():
    """Run ``LTX2VideoTransformer3DModel`` as the adapter does (``isolate_modalities=True``) inside the
    block, so the pipeline's own denoising loop is the video-only model's."""
    forward = LTX2VideoTransformer3DModel.forward

    def isolated(self, *args, **kwargs):
        kwargs["isolate_modalities"] = True
        return forward(self, *args, **kwargs)

    LTX2VideoTransformer3DModel.forward = isolated
    try:
        yield
    finally:
        LTX2VideoTransformer3DModel.forward = forward


def to_pipe_for(adapter):
    """Adapter latents -> the pipeline's ``latents=`` / ``output_type="latent"`` layout: [B, C, F, h, w],
    de-normalised (the pipeline normalises what it is given and de-normalises what it returns)."""
    mean = adapter.vae.latents_mean.view(1, -1, 1, 1, 1)
    std = adapter.vae.latents_std.view(1, -1, 1, 1, 1)
    return lambda z: z.transpose(1, 2) * std / adapter.vae.config.scaling_factor + mean


def start_noise(adapter, batch=1, seed=7):
    return fc.start_noise(adapter, 32, 32, 9, batch=batch, seed=seed)


def test_video_latents_layout_and_normalisation(adapter):
    assert isinstance(adapter, LTX2Adapter) and adapter.modality == "video"
    assert adapter.latent_shape(32, 32, 9) == (5, 8, 4, 4)  # F = 1 + (9 - 1) / 2, 8x spatial (tiny VAE)
    for size, problem in (((32, 32, 8), "1 \\+ 2k"), ((36, 32, 9), "multiples of 8")):
        with pytest.raises(ValueError, match=problem):
            adapter.latent_shape(*size)
    pixels = torch.rand(1, 9, 3, 32, 32, generator=gen(0))
    with torch.no_grad():
        z = adapter.encode_pixels(pixels, generator=gen(1))
        raw = adapter.vae.encode((pixels * 2 - 1).transpose(1, 2)).latent_dist.sample(gen(1))
        video = adapter.decode_latents(z)
        expected = adapter.vae.decode(raw, None, return_dict=False)[0]
    mean, std = torch.linspace(-0.3, 0.4, 8).view(1, 8, 1, 1, 1), torch.linspace(0.5, 1.5, 8).view(1, 8, 1, 1, 1)
    torch.testing.assert_close(z, ((raw - mean) / std).transpose(1, 2))
    torch.testing.assert_close(to_pipe_for(adapter)(z), raw, rtol=1e-5, atol=1e-5)
    assert video.shape == (1, 9, 3, 32, 32)
    torch.testing.assert_close(video, ((expected / 2 + 0.5).clamp(0, 1)).transpose(1, 2), rtol=1e-5, atol=1e-5)


def test_prompt_embeddings_are_the_connectors_outputs(adapter):
    cond = adapter.encode_prompt(fc.PROMPTS)
    embeds, mask, _, _ = adapter.pipe.encode_prompt(fc.PROMPTS, do_classifier_free_guidance=False, max_sequence_length=16)
    assert embeds.shape == (2, 16, 16 * 3)  # hidden states of the embedding layer + 2 layers, stacked
    video, audio, conn_mask = adapter.pipe.connectors(embeds, mask, padding_side="left")
    torch.testing.assert_close(cond["prompt_embeds"], video)
    torch.testing.assert_close(cond["audio_prompt_embeds"], audio)
    assert torch.equal(cond["prompt_attention_mask"], conn_mask) and conn_mask.all()  # registers fill the padding
    # per prompt: a batch encodes as its prompts one by one (the cache stores them so)
    one = adapter.encode_prompt(fc.PROMPTS[1:])
    torch.testing.assert_close(one["prompt_embeds"], cond["prompt_embeds"][1:], rtol=1e-5, atol=1e-6)


def test_shift_follows_the_video_token_count(adapter):
    config = adapter.pipe.scheduler.config
    for frames, tokens in ((9, 5 * 16), (17, 9 * 16)):
        sched = adapter.sampling_scheduler(4, height=32, width=32, num_frames=frames)
        expected = type(adapter.pipe.scheduler).from_config(config)
        expected.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25], mu=calculate_shift(tokens, 1024, 4096, 0.95, 2.05))
        torch.testing.assert_close(sched.timesteps, expected.timesteps)
    longer = adapter.sampling_scheduler(4, height=32, width=32, num_frames=17).sigmas
    assert (longer[1:-1] > adapter.sampling_scheduler(4, height=32, width=32, num_frames=9).sigmas[1:-1]).all()


def test_chain_at_noise_level_zero_is_the_pipeline_loop_video_only(adapter):
    to_pipe = to_pipe_for(adapter)
    with video_only_transformer():
        chain = fc.check_flow_chain_matches_pipeline(adapter, start_noise(adapter), to_pipe,
                                                     dict(guidance_scale=1.0, **CALL), steps=2)
    # the pipeline's joint call (audio generated alongside, audio-to-video attention on) gives another video
    with torch.no_grad():
        joint = adapter.pipe(prompt=fc.PROMPTS[:1], latents=to_pipe(start_noise(adapter)), num_inference_steps=2,
                             output_type="latent", guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0,
                             max_sequence_length=16, **SIZE).frames
    assert (joint - to_pipe(chain.final)).abs().max() > 1e-2


def test_cfg_is_the_pipelines_x0_cfg_with_rescale(adapter):
    to_pipe, start = to_pipe_for(adapter), start_noise(adapter)
    with torch.no_grad(), video_only_transformer():
        ours = sample(adapter, fc.PROMPTS[:1], num_inference_steps=2, noise_level=0.0, latents=start, decode=False,
                      guidance_scale=4.0).final
        expected = adapter.pipe(prompt=fc.PROMPTS[:1], latents=to_pipe(start), num_inference_steps=2,
                                output_type="latent", guidance_scale=4.0, **CALL).frames
        plain = adapter.pipe(prompt=fc.PROMPTS[:1], latents=to_pipe(start), num_inference_steps=2,
                             output_type="latent", guidance_scale=4.0, guidance_rescale=0.0, **CALL).frames
    torch.testing.assert_close(to_pipe(ours), expected, rtol=1e-5, atol=1e-5)
    assert (plain - expected).abs().max() > 1e-3  # the rescale matters


def test_training_forward_per_segment(adapter):
    errors, _ = fc.check_flow_training_errors(adapter, start_noise(adapter, batch=2, seed=1), segments=5)
    assert errors.shape == (2, 5)


def test_training_forward_is_the_pipelines_transformer_call(adapter):
    """The adapter's prediction = the pipeline's own transformer call on its packed latents with the
    cross-modal attention off, whatever audio goes in (the video output does not depend on it then)."""
    x, t = start_noise(adapter, batch=2, seed=3), torch.tensor([900.0, 250.0])
    cond = adapter.encode_prompt(fc.PROMPTS)
    pipe = adapter.pipe

    def pipeline_call(audio, isolate=True):
        video, _ = pipe.transformer(
            hidden_states=pipe._pack_latents(x.transpose(1, 2), 1, 1), audio_hidden_states=audio,
            encoder_hidden_states=cond["prompt_embeds"], audio_encoder_hidden_states=cond["audio_prompt_embeds"],
            timestep=t, sigma=t, encoder_attention_mask=cond["prompt_attention_mask"],
            audio_encoder_attention_mask=cond["prompt_attention_mask"], num_frames=5, height=4, width=4, fps=24.0,
            audio_num_frames=audio.shape[1], isolate_modalities=isolate, use_cross_timestep=True, return_dict=False)
        return pipe._unpack_latents(video, 5, 4, 4, 1, 1).transpose(1, 2)

    audio = torch.randn(2, 3, 8, generator=gen(4))
    with torch.no_grad():
        ours = adapter.forward(x, t, cond)
        torch.testing.assert_close(ours, pipeline_call(audio))
        torch.testing.assert_close(ours, pipeline_call(torch.zeros(2, 0, 8)))
        assert (pipeline_call(audio, isolate=False) - ours).abs().max() > 1e-3  # joint: the audio reaches the video


def test_detected_from_model_index(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "LTX2Pipeline"}')
    assert detect_family(str(tmp_path)) == "ltx2"


@pytest.mark.slow
def test_lora_round_trip_through_load_lora_weights(tmp_path, adapter):
    with video_only_transformer():
        fc.check_flow_lora_round_trip("ltx2", tmp_path, start_noise(adapter), to_pipe_for(adapter),
                                      dict(guidance_scale=1.0, **CALL), max_sequence_length=16,
                                      default_video_size=(32, 32, 9))


@pytest.mark.slow
def test_save_pretrained_reloads(tmp_path, adapter):
    fc.check_flow_save_pretrained("ltx2", LTX2Pipeline, tmp_path, start_noise(adapter, 2), torch.tensor([900.0, 250.0]),
                                  reencode=False)


def test_ltx23_architecture_chain_is_the_pipeline_loop_video_only():
    """LTX-2.3's switches (gated attention, sigma-modulated cross-attention, split RoPE, per-modality
    connector projections) through the same adapter."""
    from diffalign.pipelines.tiny.ltx2 import LTX23_CONNECTORS, LTX23_TRANSFORMER

    a = build_tiny_adapter("ltx2", transformer=LTX23_TRANSFORMER, connectors=LTX23_CONNECTORS)
    a.max_sequence_length, a.default_video_size = 16, (32, 32, 9)
    assert a.encode_prompt(fc.PROMPTS[:1])["audio_prompt_embeds"].shape == (1, 16, 8)
    with video_only_transformer():
        fc.check_flow_chain_matches_pipeline(a, start_noise(a), to_pipe_for(a), dict(guidance_scale=1.0, **CALL), steps=2)


def test_lora_on_the_video_stream_only_and_the_rest_frozen_then_freed():
    a = build_tiny_adapter("ltx2")
    a.add_lora(rank=2)
    names = [n for n, _ in a.denoiser.named_parameters() if "lora_A" in n]
    assert names and all(".attn1." in n or ".attn2." in n for n in names)
    assert not any("audio" in n for n in names)
    for name in ("connectors", "audio_vae", "vocoder", "text_encoder", "vae"):
        assert not any(p.requires_grad for p in getattr(a.pipe, name).parameters()), name
    assert set(a.drop_encoder_weights()) == {"vae", "text_encoder", "connectors", "audio_vae", "vocoder"}
    assert all(p.is_meta for p in a.pipe.connectors.parameters()) and not any(p.is_meta for p in a.denoiser.parameters())


def test_gradient_checkpointing_gives_the_same_lora_gradients():
    a, params = fc.lora_adapter("ltx2")
    a.max_sequence_length = 16
    x, cond = start_noise(a, batch=2, seed=2), a.encode_prompt(fc.PROMPTS)
    errors, parts = a.training_errors(x, cond, generator=gen(3))
    errors.mean().backward()
    grads = [p.grad.clone() for p in params]
    assert all(g.abs().sum() > 0 for g in grads)
    a.denoiser.zero_grad(set_to_none=True)
    a.enable_gradient_checkpointing()
    again, _ = a.training_errors(x, cond, noise=parts["noise"], timesteps=parts["timesteps"])
    again.mean().backward()
    torch.testing.assert_close(again, errors)
    for g, p in zip(grads, params):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_diffalign_sample_generates_through_the_joint_pipeline():
    """``diffalign sample`` / ``eval`` call the real pipeline (joint audio-video); frames come back as uint8."""
    from diffalign.pipelines.generation import generate, is_video_pipeline

    pipe = fc.build_tiny_pipeline("ltx2")
    assert is_video_pipeline(pipe)
    out = generate(pipe, ["a red circle"], video=True, num_inference_steps=2, max_sequence_length=16,
                   spatio_temporal_guidance_blocks=[0], **SIZE)
    assert out[0][0].shape == (9, 32, 32, 3) and out[0][0].dtype.name == "uint8"
