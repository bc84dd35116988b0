"""The shapes pretraining script (``python -m diffalign.shapes.pretrain``) on tiny sizes: data,
a few optimisation steps of each family, and a saved fp16 folder that plain diffusers loads."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open

import diffalign  # noqa: F401  (compat shim first)
from diffalign.shapes.prompts import prompt_split
from diffalign.shapes.pretraining.data import ShapesBatches
from diffalign.shapes.pretraining.objectives import shifted_sigmas
from diffalign.shapes.pretrain import main


def test_batches_are_train_prompts_deterministic_and_fresh():
    batches = ShapesBatches(batch_size=60, seed=3, caption_dropout=0.5)
    images, captions = batches(7)
    again, captions_again = batches(7)
    other, _ = batches(8)
    assert images.shape == (60, 3, 64, 64)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert torch.equal(images, again) and captions == captions_again
    assert not torch.equal(images, other)
    dropped = sum(c == "" for c in captions)
    assert 10 <= dropped <= 50  # ~half with caption_dropout=0.5
    kept = [c for c in captions if c]
    # Every non-empty caption is a TRAIN-split prompt (the split is per category; any tag that
    # holds the prompt says which split it is in).
    from diffalign.shapes.prompts import all_rows
    from diffalign.shapes.vocab import CATEGORIES

    tag_of = {r["prompt"]: t for t in CATEGORIES for r in all_rows(t)}
    assert all(prompt_split(c, tag_of[c]) == "train" for c in kept)


def test_latent_pool_serves_encoded_canonical_scenes_deterministically():
    from diffalign.shapes.pretrain import build_pipeline
    from diffalign.shapes.pretraining.autoencoder import encode_latents
    from diffalign.shapes.pretraining.data import LatentPool

    vae = build_pipeline("sd", seed=0, tiny=True).vae.eval()
    pool = LatentPool(vae, size=20, batch_size=8, seed=1, caption_dropout=0.25, encode_batch=8, layout="canonical")
    assert len(pool) == 20 and pool.latents.shape == (20, 8, 16, 16) and pool.yields_latents
    latents, captions = pool(3)
    again, captions_again = pool(3)
    assert torch.equal(latents, again) and captions == captions_again and len(captions) == 8
    # the pool holds the posterior means of the rendered canonical scenes, scaled like the pipeline's
    images, prompts = ShapesBatches(8, seed=1 + 104729, caption_dropout=0.0, layout="canonical")(0)
    assert prompts == pool.captions[:8]
    assert torch.allclose(pool.latents[:8], encode_latents(vae, images, sample=False), atol=1e-5)
    with pytest.raises(ValueError, match="unknown layout"):
        ShapesBatches(4, layout="grid")


def test_text_encoders_start_with_spread_embeddings():
    from diffalign.shapes.pretrain import build_pipeline

    for family in ("sd", "sd3", "flux2"):
        pipe = build_pipeline(family, seed=0, tiny=True)
        for encoder in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
            if encoder is None:
                continue
            table = encoder.get_input_embeddings().weight
            assert 0.9 < table.std().item() < 1.1  # not CLIP's 0.02: each token's identity dominates


def test_v_prediction_loss_is_plain_by_default():
    """Min-SNR weighting is opt-in: with it, the high-noise steps get almost no weight."""
    from diffalign.shapes.pretrain import build_pipeline
    from diffalign.shapes.pretraining.objectives import sd_denoising_loss

    pipe = build_pipeline("sd", seed=0, tiny=True)
    latents = torch.randn(4, 8, 16, 16)
    plain = sd_denoising_loss(pipe, latents, ["a photo of a circle"] * 4, torch.Generator().manual_seed(0))
    explicit = sd_denoising_loss(pipe, latents, ["a photo of a circle"] * 4, torch.Generator().manual_seed(0),
                                 snr_gamma=None)
    weighted = sd_denoising_loss(pipe, latents, ["a photo of a circle"] * 4, torch.Generator().manual_seed(0),
                                 snr_gamma=5.0)
    assert plain.item() == pytest.approx(explicit.item()) and weighted.item() < plain.item()


def test_shifted_sigmas_match_the_flow_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    # The scheduler's training sigmas are the shifted grid t/1000, t = 1000 ... 1.
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=2.0)
    unshifted = torch.arange(1000, 0, -1) / 1000
    assert torch.allclose(shifted_sigmas(unshifted, 2.0), sched.sigmas, atol=1e-5)
    assert shifted_sigmas(torch.tensor([0.5]), 2.0).item() == pytest.approx(2 / 3)


def _stored_dtypes(path):
    with safe_open(path, "pt") as f:
        return {f.get_slice(k).get_dtype() for k in f.keys()}


@pytest.mark.parametrize("family", ["sd", "sd3", "flux2"])
@pytest.mark.slow
def test_tiny_training_run_saves_a_loadable_fp16_pipeline(tmp_path, family):
    from diffusers import DiffusionPipeline

    out = str(tmp_path / f"shapes-{family}")
    ckpt = str(tmp_path / "ckpt")
    main(["--family", family, "--out", out, "--checkpoint-dir", ckpt, "--tiny", "--steps", "3",
          "--vae-steps", "2", "--vae-batch-size", "4", "--batch-size", "4", "--checkpoint-every", "2",
          "--threads", "1", "--t5-tokens", "8", "--latent-pool", "16"])
    log = [json.loads(line) for line in open(os.path.join(ckpt, "log.jsonl"))]
    losses = [r["loss"] for r in log if r.get("stage") == "denoiser"]
    assert losses and all(np.isfinite(losses))
    assert sorted(os.listdir(ckpt)) == ["log.jsonl", "step-000002", "step-000003"]
    settings = json.load(open(os.path.join(out, "diffalign_sampling.json")))
    assert settings["num_inference_steps"] == 20
    assert settings.get("max_sequence_length") == (40 if family == "flux2" else None)

    denoiser_dir = "unet" if family == "sd" else "transformer"
    assert _stored_dtypes(os.path.join(out, denoiser_dir, "diffusion_pytorch_model.safetensors")) == {"F16"}
    assert _stored_dtypes(os.path.join(out, "text_encoder", "model.safetensors")) == {"F16"}

    pipe = DiffusionPipeline.from_pretrained(out)
    expected = {"sd": "StableDiffusionPipeline", "sd3": "StableDiffusion3Pipeline", "flux2": "Flux2KleinPipeline"}
    assert type(pipe).__name__ == expected[family]
    assert pipe.text_encoder.dtype == torch.float32  # loads like the diffusers models, not as fp16
    vae_config = pipe.vae.config
    if family == "flux2":  # normalised by the batch-norm statistics of the patchified latents
        assert type(pipe.vae).__name__ == "AutoencoderKLFlux2"
        assert pipe.vae.bn.running_var.shape == (32,) and not torch.allclose(pipe.vae.bn.running_var, torch.ones(32))
    else:
        assert vae_config.scaling_factor != 1.0  # normalised from the renders' latents
        assert (vae_config.shift_factor is not None) == (family == "sd3")
    pipe.set_progress_bar_config(disable=True)
    # klein defaults to 128 latent positions a side (512 px at this VAE's factor 4): the size is a setting
    kwargs = {"sd": {}, "sd3": {"max_sequence_length": 8}, "flux2": {"max_sequence_length": 40, "height": 64, "width": 64}}[family]
    images = pipe(prompt=["a photo of a red circle", ""], num_inference_steps=2, guidance_scale=3.0,
                  generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images
    assert images.shape == (2, 64, 64, 3) and np.isfinite(images).all()
    if family == "flux2":  # the training adapter pads prompts as the folder's sampling settings say
        from diffalign.pipelines import load_adapter

        adapter = load_adapter(out)
        assert adapter.family == "flux2" and adapter.max_sequence_length == 40
        assert adapter.encode_prompt(["a photo of a red circle"])["prompt_embeds"].shape[1] == 40


@pytest.mark.slow
def test_assemble_swaps_only_the_decoder(tmp_path):
    from diffusers import AutoencoderKL, DiffusionPipeline

    from diffalign.shapes.pretrain import build_pipeline
    from diffalign.shapes.pretraining.assemble import assemble
    from diffalign.shapes.pretraining.loop import save_fp16

    base = save_fp16(build_pipeline("sd", seed=0, tiny=True), str(tmp_path / "base"))
    other = save_fp16(build_pipeline("sd", seed=1, tiny=True), str(tmp_path / "other"))
    out = assemble(base, str(tmp_path / "assembled"), decoder_from=other, steps=12, guidance=4.0)

    load = lambda path: AutoencoderKL.from_pretrained(path, subfolder="vae").state_dict()
    base_sd, other_sd, out_sd = load(base), load(other), load(out)
    decoder_keys = [k for k in out_sd if k.startswith(("decoder.", "post_quant_conv."))]
    encoder_keys = [k for k in out_sd if k.startswith(("encoder.", "quant_conv."))]
    assert decoder_keys and encoder_keys
    assert all(torch.equal(out_sd[k], other_sd[k]) for k in decoder_keys)
    assert all(torch.equal(out_sd[k], base_sd[k]) for k in encoder_keys)
    assert not torch.equal(base_sd[decoder_keys[0]], other_sd[decoder_keys[0]])
    assert json.load(open(os.path.join(out, "diffalign_sampling.json")))["num_inference_steps"] == 12
    assert type(DiffusionPipeline.from_pretrained(out)).__name__ == "StableDiffusionPipeline"


@pytest.mark.slow  # ~1 s: building the moving-shapes prompt split
def test_video_batches_are_balanced_train_clips_deterministic_and_fresh():
    from diffalign.shapes.pretraining.data import VideoBatches
    from diffalign.shapes.video import VIDEO_CATEGORIES, video_prompt_split, video_prompts

    batches = VideoBatches(batch_size=10, seed=3, size=32, num_frames=5, caption_dropout=0.0)
    clips, captions = batches(7)
    again, captions_again = batches(7)
    other, _ = batches(8)
    assert clips.shape == (10, 3, 5, 32, 32) and clips.min() >= -1.0 and clips.max() <= 1.0
    assert torch.equal(clips, again) and captions == captions_again and not torch.equal(clips, other)
    assert not torch.equal(clips[:, :, 0], clips[:, :, -1])  # the shapes move
    tag_of = {r["prompt"]: r["tag"] for r in video_prompts("train")}
    assert all(video_prompt_split(c, tag_of[c]) == "train" for c in captions)
    # every category is drawn, not in proportion to its size (passing holds 4320 of 5900 prompts)
    tags = [tag_of[c] for step in range(6) for c in batches(step)[1]]
    assert set(tags) == set(VIDEO_CATEGORIES) and tags.count("passing") < 30
    # canonical layouts: the same rows and captions, each clip on its prompt's fixed slots
    canonical = VideoBatches(batch_size=10, seed=3, size=32, num_frames=5, caption_dropout=0.0, layout="canonical")
    canon_clips, canon_captions = canonical(7)
    assert canon_captions == captions and not torch.equal(canon_clips, clips)
    assert torch.equal(canon_clips, canonical(7)[0])
    with pytest.raises(ValueError, match="unknown layout 'grid'"):
        VideoBatches(batch_size=2, layout="grid")


@pytest.mark.slow
def test_tiny_cogvideox_training_run_saves_a_loadable_fp16_video_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    from diffalign.shapes.pretraining.assemble import assemble

    out, ckpt = str(tmp_path / "shapes-cogvideox"), str(tmp_path / "ckpt")
    main(["--family", "cogvideox", "--out", out, "--checkpoint-dir", ckpt, "--tiny", "--steps", "2",
          "--vae-steps", "2", "--vae-batch-size", "2", "--batch-size", "4", "--threads", "1", "--latent-pool", "8"])
    log = [json.loads(line) for line in open(os.path.join(ckpt, "log.jsonl"))]
    assert all(np.isfinite([r["loss"] for r in log if r.get("stage") in ("vae", "denoiser") and "loss" in r]))
    assert json.load(open(os.path.join(out, "diffalign_sampling.json"))) == {
        "num_inference_steps": 20, "guidance_scale": 5.0, "height": 32, "width": 32, "num_frames": 9}
    assert _stored_dtypes(os.path.join(out, "transformer", "diffusion_pytorch_model.safetensors")) == {"F16"}
    pipe = DiffusionPipeline.from_pretrained(out)
    assert type(pipe).__name__ == "CogVideoXPipeline" and type(pipe.vae).__name__ == "AutoencoderKLCogVideoX"
    assert pipe.text_encoder.dtype == torch.float32 and pipe.vae.config.scaling_factor != 1.0
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(["a video of a red circle moving left", ""], num_frames=9, num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0), output_type="np").frames
    assert np.asarray(frames).shape == (2, 9, 32, 32, 3) and np.isfinite(frames).all()
    # assembling keeps the recorded clip size and frame count, with new steps and guidance
    assembled = assemble(out, str(tmp_path / "assembled"), steps=12, guidance=4.0)
    assert json.load(open(os.path.join(assembled, "diffalign_sampling.json"))) == {
        "height": 32, "width": 32, "num_frames": 9, "num_inference_steps": 12, "guidance_scale": 4.0}


@pytest.mark.slow
def test_cogvideox_architecture_options_f2_vae_patch4_and_short_vae_clips(tmp_path):
    """``--video-vae-channels 8,8`` (f=2 spatial), ``--video-patch-size 4``, ``--vae-frames 5``,
    ``--video-layers/--video-heads`` and short T5 lengths build, train and save a pipeline that
    still samples 9-frame 32x32 clips from 16x16 latents, and whose recorded ``max_sequence_length``
    (the smallest ``--t5-tokens`` value) the adapter takes."""
    from diffusers import DiffusionPipeline

    from diffalign.pipelines.cogvideox import CogVideoXAdapter

    out = str(tmp_path / "f2")
    main(["--family", "cogvideox", "--out", out, "--checkpoint-dir", str(tmp_path / "ckpt"), "--tiny",
          "--steps", "1", "--vae-steps", "1", "--vae-batch-size", "2", "--batch-size", "2", "--threads", "1",
          "--latent-pool", "0", "--video-vae-channels", "8,8", "--video-patch-size", "4", "--vae-frames", "5",
          "--video-layers", "3", "--video-heads", "3", "--t5-tokens", "24,226"])
    assert json.load(open(os.path.join(out, "diffalign_sampling.json")))["max_sequence_length"] == 24
    assert CogVideoXAdapter.from_pretrained(out).max_sequence_length == 24
    pipe = DiffusionPipeline.from_pretrained(out)
    assert pipe.vae.config.block_out_channels == [8, 8] and pipe.transformer.config.patch_size == 4
    assert pipe.transformer.config.num_layers == 3 and pipe.transformer.config.num_attention_heads == 3
    assert pipe.transformer.config.sample_height == 16 and pipe.vae_scale_factor_spatial == 2
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(["a video of a red circle moving left"], num_frames=9, num_inference_steps=1,
                  generator=torch.Generator().manual_seed(0), output_type="np").frames
    assert np.asarray(frames).shape == (1, 9, 32, 32, 3) and np.isfinite(frames).all()
    z = pipe.vae.encode(torch.zeros(1, 3, 9, 32, 32)).latent_dist.mode()
    assert z.shape == (1, 4, 5, 16, 16)  # the tiny architecture's 4 latent channels


@pytest.mark.slow
def test_init_from_keeps_fresh_only_the_tensors_whose_shape_changed(tmp_path):
    """``--init-from`` a pipeline with another patch size: every same-shaped tensor is copied, the
    patch embedding and output projection stay fresh and are named; other names are an error."""
    from diffalign.shapes.pretrain import build_pipeline, load_trained_weights
    from diffalign.shapes.pretraining.loop import save_fp16

    source = build_pipeline("cogvideox", seed=1, tiny=True)
    folder = save_fp16(source, str(tmp_path / "source"))
    target = build_pipeline("cogvideox", seed=2, tiny=True, vae_channels=(8, 8), patch_size=4)
    fresh = target.transformer.patch_embed.proj.weight.clone()
    skipped = load_trained_weights(target, folder)
    assert sorted(skipped) == ["patch_embed.proj.weight", "proj_out.bias", "proj_out.weight"]
    assert torch.equal(target.transformer.patch_embed.proj.weight, fresh)
    copied = target.transformer.transformer_blocks[0].attn1.to_q.weight
    assert torch.equal(copied, source.transformer.transformer_blocks[0].attn1.to_q.weight.half().float())
    assert torch.equal(target.text_encoder.shared.weight, source.text_encoder.shared.weight.half().float())
    with pytest.raises(ValueError, match="other parameter names"):
        load_trained_weights(build_pipeline("cogvideox", seed=2, tiny=False), folder)


@pytest.mark.slow  # renders and encodes 16 scenes
def test_flux2_latent_pool_is_the_klein_pipelines_normalised_patchified_latents():
    """shapes-flux2 reuses the shapes AutoencoderKL's weights in FLUX.2's AutoencoderKLFlux2: the
    same decoded images, and latents normalised per channel by the batch-norm statistics that the
    klein pipeline undoes before decoding."""
    from diffusers import AutoencoderKL

    from diffalign.shapes.pretraining.autoencoder import (
        copy_autoencoder_kl, encode_latents, normalise_flux2_latents, patchify_latents)
    from diffalign.shapes.pretraining.components import build_flux2_vae, build_vae

    torch.manual_seed(0)
    kl, flux2 = build_vae((8, 8, 16)).eval(), build_flux2_vae((8, 8, 16)).eval()
    copy_autoencoder_kl(kl, flux2)
    images, _ = ShapesBatches(16, seed=0, caption_dropout=0.0)(0)
    with torch.no_grad():
        z = kl.encode(images).latent_dist.mean
        assert torch.allclose(flux2.decode(z).sample, kl.decode(z).sample, atol=1e-6)
    normalise_flux2_latents(flux2, images)
    samples = encode_latents(flux2, images, torch.Generator().manual_seed(1))  # posterior samples, like the stats
    assert samples.shape == (16, 32, 8, 8)
    assert samples.mean(dim=(0, 2, 3)).abs().max() < 0.2 and 0.8 < samples.std(dim=(0, 2, 3)).mean() < 1.2
    latents = encode_latents(flux2, images, sample=False)  # what the latent pool holds
    mean, var = flux2.bn.running_mean.view(1, -1, 1, 1), flux2.bn.running_var.view(1, -1, 1, 1)
    undone = latents * torch.sqrt(var + flux2.config.batch_norm_eps) + mean  # what the pipeline does
    assert torch.allclose(undone, patchify_latents(z), atol=1e-5)
    with pytest.raises(ValueError, match="VAE layouts differ"):
        copy_autoencoder_kl(build_vae((8, 16, 16)), build_flux2_vae((8, 16, 16, 16)))


def test_object_latent_mask_finds_the_positions_off_the_background():
    from diffalign.shapes.pretraining.objectives import object_latent_mask

    background = torch.tensor([0.3, -0.2, 0.1, 0.5])
    latents = background[None, None, :, None, None].repeat(2, 3, 1, 8, 8)  # [B, F, C, h, w]
    latents[0, 1, :, 2:4, 5:7] += torch.tensor([1.0, -1.0, 0.5, 0.0])[:, None, None]  # RMS 0.75 > 0.5
    latents[1, :, :, 0, 0] += 0.4  # RMS 0.4: under the threshold
    mask = object_latent_mask(latents)
    assert mask.shape == (2, 3, 1, 8, 8)
    expected = torch.zeros(2, 3, 1, 8, 8)
    expected[0, 1, 0, 2:4, 5:7] = 1
    assert torch.equal(mask, expected)


def test_cogvideox_object_weight_is_the_weighted_mean_of_the_squared_error():
    from diffalign.pipelines.cogvideox import CogVideoXAdapter
    from diffalign.pipelines.conditioning import PromptEmbeds
    from diffalign.shapes.pretrain import build_pipeline
    from diffalign.shapes.pretraining.objectives import cogvideox_loss, object_latent_mask

    pipe = build_pipeline("cogvideox", seed=0, tiny=True)
    adapter = CogVideoXAdapter(pipe)
    adapter.max_sequence_length = 16
    latents = 0.1 * torch.randn(2, pipe.transformer.config.in_channels, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    latents[:, :, :, 2:5, 2:5] += 2.0  # an "object" on a slightly noisy flat background
    captions = ["a video of a red circle moving left", ""]
    with torch.no_grad():
        plain = cogvideox_loss(pipe, latents, captions, torch.Generator().manual_seed(5), adapter=adapter)
        weighted = cogvideox_loss(pipe, latents, captions, torch.Generator().manual_seed(5), adapter=adapter,
                                  object_weight=3.0)
        embeds, _ = pipe.encode_prompt(prompt=captions, do_classifier_free_guidance=False, max_sequence_length=16)
        frames = latents.permute(0, 2, 1, 3, 4)
        errors, parts = adapter.training_errors(frames, PromptEmbeds({"prompt_embeds": embeds}),
                                                generator=torch.Generator().manual_seed(5))
    squared = (parts["prediction"] - parts["target"]).float() ** 2  # [B, F, C, h, w]
    mask = object_latent_mask(frames)
    assert 0 < mask.mean() < 0.5
    w = (1 + 3.0 * mask).expand_as(squared)
    by_hand = ((squared * w).flatten(1).sum(1) / w.flatten(1).sum(1)).mean()
    assert torch.allclose(plain, errors.mean()) and torch.allclose(weighted, by_hand)
    assert not torch.allclose(weighted, plain)


def test_object_weight_is_refused_outside_the_video_families(tmp_path):
    with pytest.raises(SystemExit, match="--object-weight is for the video families"):
        main(["--family", "sd", "--out", str(tmp_path / "o"), "--tiny", "--steps", "1", "--object-weight", "2"])


@pytest.mark.slow
def test_tiny_wan_training_run_saves_a_wan_pipeline_with_normalised_latents(tmp_path):
    """``--family wan``: the Wan2.1 classes (``AutoencoderKLWan`` with 2x spatial / 2x temporal compression,
    ``WanTransformer3DModel``, UMT5) train and save a plain ``WanPipeline`` folder whose VAE records per-channel
    ``latents_mean`` / ``latents_std``, whose latent pool is normalised by them, and whose recorded size and
    text length the Wan adapter takes."""
    from diffusers import DiffusionPipeline

    from diffalign.pipelines.wan import WanAdapter
    from diffalign.shapes.pretraining.autoencoder import encode_latents
    from diffalign.shapes.pretraining.data import VideoBatches

    out, ckpt = str(tmp_path / "shapes-wan"), str(tmp_path / "ckpt")
    main(["--family", "wan", "--out", out, "--checkpoint-dir", ckpt, "--tiny", "--steps", "2", "--vae-steps", "2",
          "--vae-batch-size", "2", "--batch-size", "4", "--threads", "1", "--latent-pool", "8",
          "--t5-tokens", "32,512", "--video-patch-size", "2"])
    log = [json.loads(line) for line in open(os.path.join(ckpt, "log.jsonl"))]
    assert all(np.isfinite([r["loss"] for r in log if r.get("stage") in ("vae", "denoiser") and "loss" in r]))
    assert json.load(open(os.path.join(out, "diffalign_sampling.json"))) == {
        "num_inference_steps": 20, "guidance_scale": 5.0, "height": 32, "width": 32, "num_frames": 9,
        "max_sequence_length": 32}
    assert _stored_dtypes(os.path.join(out, "transformer", "diffusion_pytorch_model.safetensors")) == {"F16"}
    pipe = DiffusionPipeline.from_pretrained(out, torch_dtype=torch.float32)
    assert type(pipe).__name__ == "WanPipeline" and type(pipe.vae).__name__ == "AutoencoderKLWan"
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (2, 2)
    # the recorded statistics normalise fresh clips' latents to about zero mean, unit std per channel
    clips, _ = VideoBatches(16, seed=5, size=32, num_frames=9, caption_dropout=0.0)(0)
    z = encode_latents(pipe.vae, clips, torch.Generator().manual_seed(0))
    assert z.shape == (16, 4, 5, 16, 16)
    per_channel = z.transpose(0, 1).flatten(1)
    assert per_channel.mean(1).abs().max() < 0.3 and ((per_channel.std(1) - 1).abs() < 0.3).all()
    adapter = WanAdapter.from_pretrained(out)
    assert adapter.max_sequence_length == 32 and adapter.default_size() == (32, 32, 9)
    assert adapter.latent_shape(32, 32, 9) == (5, 4, 16, 16)
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(["a video of a red circle moving left", ""], num_frames=9, height=32, width=32,
                  num_inference_steps=2, max_sequence_length=32, generator=torch.Generator().manual_seed(0),
                  output_type="np").frames
    assert np.asarray(frames).shape == (2, 9, 32, 32, 3) and np.isfinite(frames).all()


def test_wan_flow_loss_is_the_adapters_training_error_and_weighs_objects():
    from diffalign.pipelines.conditioning import PromptEmbeds
    from diffalign.pipelines.wan import WanAdapter
    from diffalign.shapes.pretrain import build_pipeline
    from diffalign.shapes.pretraining.objectives import object_latent_mask, wan_flow_loss

    pipe = build_pipeline("wan", seed=0, tiny=True)
    adapter = WanAdapter(pipe)
    adapter.max_sequence_length = 16
    latents = 0.1 * torch.randn(2, pipe.transformer.config.in_channels, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    latents[:, :, :, 2:5, 2:5] += 2.0
    captions = ["a video of a red circle moving left", ""]
    with torch.no_grad():
        plain = wan_flow_loss(pipe, latents, captions, torch.Generator().manual_seed(5), adapter=adapter)
        weighted = wan_flow_loss(pipe, latents, captions, torch.Generator().manual_seed(5), adapter=adapter,
                                 object_weight=3.0)
        embeds, _ = pipe.encode_prompt(prompt=captions, do_classifier_free_guidance=False, max_sequence_length=16)
        frames = latents.permute(0, 2, 1, 3, 4)
        errors, parts = adapter.training_errors(frames, PromptEmbeds({"prompt_embeds": embeds}),
                                                generator=torch.Generator().manual_seed(5))
    squared = (parts["prediction"] - parts["target"]).float() ** 2
    w = (1 + 3.0 * object_latent_mask(frames)).expand_as(squared)
    by_hand = ((squared * w).flatten(1).sum(1) / w.flatten(1).sum(1)).mean()
    assert torch.allclose(plain, errors.mean()) and torch.allclose(weighted, by_hand)
    assert not torch.allclose(weighted, plain)


def test_video_size_reaches_the_clips_the_configs_and_the_recorded_settings():
    from diffalign.shapes.pretrain import build_pipeline, parse_args, sampling_settings, training_batches

    args = parse_args(["--family", "cogvideox", "--out", "x", "--video-size", "48"])
    assert (args.video_size, args.layout) == (48, "canonical")
    settings = sampling_settings(args)
    assert (settings["height"], settings["width"], settings["num_frames"]) == (48, 48, 9)
    assert parse_args(["--family", "cogvideox", "--out", "x"]).video_size == 32
    pipe = build_pipeline("cogvideox", seed=0, tiny=True, size=48)  # tiny VAE: f=4
    assert pipe.transformer.config.sample_height == pipe.transformer.config.sample_width == 12
    assert pipe.vae.config.sample_height == 48
    batches = training_batches("cogvideox", 2, seed=0, layout="canonical", size=48, num_frames=5)
    assert (batches.size, batches.layout) == (48, "canonical")
