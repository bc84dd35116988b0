"""Checks every UNet family adapter must pass, shared by tests/test_pipeline_<family>.py.

Each check builds on the family's tiny pipeline and compares the adapter with what the family's own
diffusers pipeline does (``__call__``, ``load_lora_weights``, ``from_pretrained``).
"""
from __future__ import annotations

import math

import diffalign  # noqa: F401  (compat shim first)
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline

from diffalign.pipelines import LORA_WEIGHT_NAME, adapter_for, load_adapter
from diffalign.pipelines.sampling import sample
from diffalign.pipelines.tiny import build_tiny_adapter, build_tiny_pipeline

PROMPTS = ["a red circle left of a blue square", "two green triangles"]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sd_alphas_cumprod() -> np.ndarray:
    """alphā_t of the SD scaled-linear schedule (betas 0.00085..0.012, T=1000), float64, no diffusers."""
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def lora_adapter(family: str, seed: int = 0, **overrides):
    """The tiny adapter with a rank-4, alpha-8 LoRA whose B matrices are random (so it matters)."""
    adapter = build_tiny_adapter(family, seed=seed, **overrides)
    params = adapter.add_lora(rank=4, alpha=8)
    gen = seeded(123)
    with torch.no_grad():
        for name, p in adapter.denoiser.named_parameters():
            if "lora_B" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return adapter, params


def fixed_inputs(adapter, batch: int = 2, seed: int = 0):
    latents = torch.randn(batch, *adapter.latent_shape(32, 32), generator=seeded(seed))
    return latents, torch.tensor([900, 250][:batch])


# ---------------------------------------------------------------------------------------------- checks
def check_training_step(family: str, **overrides) -> None:
    adapter, lora_params = lora_adapter(family, **overrides)
    cond = adapter.encode_prompt(PROMPTS)
    pixels = torch.rand(2, 3, 32, 32, generator=seeded(1))
    latents = adapter.encode_pixels(pixels, generator=seeded(2))
    assert latents.shape == (2, *adapter.latent_shape(32, 32))
    errors, parts = adapter.training_errors(latents, cond, generator=seeded(3))
    assert errors.shape == (2,) and torch.isfinite(errors).all()
    assert parts["timesteps"].dtype == torch.int64 and ((parts["timesteps"] >= 0) & (parts["timesteps"] < 1000)).all()
    torch.testing.assert_close(errors, ((parts["prediction"] - parts["target"]) ** 2).mean(dim=(1, 2, 3)))
    errors.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_params)
    frozen = [p for n, p in adapter.denoiser.named_parameters() if "lora_" not in n]
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
    # gradient checkpointing gives the same gradients
    grads = [p.grad.clone() for p in lora_params]
    adapter.denoiser.zero_grad(set_to_none=True)
    adapter.enable_gradient_checkpointing()
    again, _ = adapter.training_errors(latents, cond, noise=parts["noise"], timesteps=parts["timesteps"])
    again.mean().backward()
    torch.testing.assert_close(again, errors)
    for g, p in zip(grads, lora_params):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def check_noise_and_target(family: str, prediction_type: str) -> None:
    """add_noise and training_target against the closed forms with an independently computed schedule."""
    adapter = build_tiny_adapter(family, prediction_type=prediction_type)
    x0, noise = torch.randn(2, 4, 8, 8, generator=seeded(0)), torch.randn(2, 4, 8, 8, generator=seeded(1))
    t = torch.tensor([999, 17])
    ab = torch.tensor(sd_alphas_cumprod()[t.numpy()], dtype=torch.float32).view(-1, 1, 1, 1)
    torch.testing.assert_close(adapter.add_noise(x0, noise, t), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)
    expected = {"epsilon": noise, "v_prediction": ab.sqrt() * noise - (1 - ab).sqrt() * x0}[prediction_type]
    torch.testing.assert_close(adapter.training_target(x0, noise, t), expected)
    # x0 recovered from the ideal prediction
    torch.testing.assert_close(adapter.predict_original(expected, t, adapter.add_noise(x0, noise, t)), x0,
                               rtol=1e-4, atol=1e-4)
    ts = adapter.sample_timesteps(4000, generator=seeded(5))
    assert ts.min() == 0 and ts.max() == 999 and abs(ts.float().mean().item() - 499.5) < 15


def check_matches_pipeline_call(family: str, guidance_scale: float, size: tuple[int, int] = (32, 32),
                                **overrides) -> None:
    """Adapter conditioning + guided forward + DDIM steps reproduce the pipeline's own __call__
    (at ``size`` = (height, width); 32 is the tiny pipelines' default)."""
    adapter = build_tiny_adapter(family, **overrides)
    pipe = adapter.pipe
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    height, width = size
    start = torch.randn(1, *adapter.latent_shape(height, width), generator=seeded(7))
    expected = pipe(PROMPTS[0], latents=start.clone(), num_inference_steps=2, guidance_scale=guidance_scale,
                    height=height, width=width, output_type="latent").images
    with torch.no_grad():  # the chain every trainer and sampler uses, deterministic (DDIM eta 0)
        chain = sample(adapter, PROMPTS[:1], num_inference_steps=2, guidance_scale=guidance_scale,
                       noise_level=0.0, latents=start.clone(), height=height, width=width, decode=False)
    torch.testing.assert_close(chain.final, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(chain.log_probs, torch.zeros(1, 2))


def check_sampler_step_and_chain(family: str, **overrides) -> None:
    adapter = build_tiny_adapter(family, **overrides)
    cond = adapter.encode_prompt(PROMPTS)
    sched = adapter.sampling_scheduler(4)
    assert isinstance(sched, DDIMScheduler) and sched.timesteps.tolist() == [751, 501, 251, 1]
    x = adapter.initial_latents(2, 32, 32, generator=seeded(0), scheduler=sched)
    with torch.no_grad():
        out = adapter.forward(x, sched.timesteps[0].expand(2), cond)
        prev, lp = adapter.sampler_step(sched, out, sched.timesteps[0], x, generator=seeded(1))
        prev2, lp2 = adapter.sampler_step(sched, out, sched.timesteps[0], x, prev_sample=prev)
    assert prev.shape == x.shape and lp.shape == (2,) and torch.isfinite(lp).all()
    assert torch.equal(lp, lp2)
    # eta 1 (default) at t=751 -> 501: std^2 = (1-ab_p)/(1-ab_t) (1-ab_t/ab_p); density of a drawn point
    ab = sd_alphas_cumprod()
    std = math.sqrt((1 - ab[501]) / (1 - ab[751]) * (1 - ab[751] / ab[501]))
    assert abs(lp.mean().item() - (-0.5 - math.log(std) - 0.5 * math.log(2 * math.pi))) < 0.05
    with torch.no_grad():
        chain = sample(adapter, PROMPTS, num_inference_steps=3, guidance_scale=2.0, generator=seeded(2))
    assert chain.latents.shape == chain.next_latents.shape == (2, 3, *adapter.latent_shape(32, 32))
    assert torch.equal(chain.latents[:, 1:], chain.next_latents[:, :-1]) and torch.equal(chain.next_latents[:, -1], chain.final)
    assert chain.log_probs.shape == (2, 3) and torch.isfinite(chain.log_probs).all()
    assert chain.images.shape == (2, 3, 32, 32) and 0 <= chain.images.min() and chain.images.max() <= 1


def check_reference_is_base(family: str) -> None:
    adapter, _ = lora_adapter(family)
    base = adapter_for(build_tiny_pipeline(family))
    cond = adapter.encode_prompt(PROMPTS)
    x, t = fixed_inputs(adapter)
    with torch.no_grad():
        on = adapter.forward(x, t, cond)
        with adapter.reference():
            off = adapter.forward(x, t, cond)
        expected = base.forward(x, t, cond)
        again = adapter.forward(x, t, cond)
    torch.testing.assert_close(off, expected)
    assert (on - off).abs().max() > 1e-2
    torch.testing.assert_close(again, on)  # adapters back on after the block
    # the training forward's reference pass (what every offline loss uses): the base network, no grad
    noise = torch.randn(x.shape, generator=seeded(5))
    ref, ref_parts = adapter.training_errors(x, cond, noise=noise, timesteps=t, reference=True)
    base_errors, base_parts = base.training_errors(x, cond, noise=noise, timesteps=t)
    torch.testing.assert_close(ref_parts["prediction"], base_parts["prediction"])
    torch.testing.assert_close(ref, base_errors)
    policy, _ = adapter.training_errors(x, cond, noise=noise, timesteps=t)
    assert not ref.requires_grad and policy.requires_grad and (policy - ref).abs().max() > 1e-6


def check_lora_loads_in_diffusers(family: str, tmp_path) -> None:
    """save_lora -> the family pipeline's load_lora_weights reproduces the trained output."""
    from safetensors import safe_open

    adapter, _ = lora_adapter(family)
    path = adapter.save_lora(tmp_path)
    assert path.endswith(LORA_WEIGHT_NAME)
    with safe_open(path, "pt") as f:
        assert '"unet.lora_alpha": 8.0' in f.metadata()["lora_adapter_metadata"]
    call = dict(num_inference_steps=3, output_type="pt", guidance_scale=2.0)
    fresh = build_tiny_pipeline(family)
    base_img = fresh(PROMPTS[0], generator=seeded(0), **call).images
    fresh.load_lora_weights(str(tmp_path))
    lora_img = fresh(PROMPTS[0], generator=seeded(0), **call).images
    ours = adapter.generate(PROMPTS[0], generator=seeded(0), **call).images
    torch.testing.assert_close(lora_img, ours, rtol=1e-4, atol=1e-4)
    assert (lora_img - base_img).abs().max() > 1e-2


def check_save_pretrained(family: str, pipeline_class, tmp_path) -> None:
    adapter, _ = lora_adapter(family)
    cond = adapter.encode_prompt(PROMPTS)
    x, t = fixed_inputs(adapter)
    with torch.no_grad():
        on = adapter.forward(x, t, cond)
    adapter.save_pretrained(tmp_path / "merged")
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "merged")
    assert type(pipe) is pipeline_class
    assert not any("lora" in n for n, _ in pipe.unet.named_parameters())
    loaded = load_adapter(str(tmp_path / "merged"))  # family read from model_index.json
    assert loaded.family == family
    with torch.no_grad():
        merged = loaded.forward(x, t, cond)
    torch.testing.assert_close(merged, on, rtol=1e-4, atol=1e-4)
    assert adapter.has_lora and any("lora" in n for n, _ in adapter.denoiser.named_parameters())


def check_attention_errors(family: str) -> None:
    adapter = build_tiny_adapter(family)
    cond = adapter.encode_prompt(PROMPTS)
    x, t = fixed_inputs(adapter)
    with torch.no_grad():
        before = adapter.forward(x, t, cond)
        adapter.set_attention_backend("sdpa")
        torch.testing.assert_close(adapter.forward(x, t, cond), before)
    with pytest.raises(ImportError, match=r"pip install diffalign\[cuda\]"):
        adapter.set_attention_backend("xformers")
    with pytest.raises((ImportError, RuntimeError), match="CUDA|flash-attn"):
        adapter.set_attention_backend("flash")
    with pytest.raises(ValueError, match="sdpa, xformers, flash"):
        adapter.set_attention_backend("eager")
    assert adapter.attention_backend == "sdpa"


# ------------------------------------------------------------------------------------ flow DiT families
# FLUX.1, Wan, Qwen-Image (and any later flow family): each test file gives its family, the size it
# samples at, and how the pipeline's own ``latents=`` layout relates to the adapter's (packing, frame axis).
class DiffusersWarnings:
    """Collect what diffusers' loggers warn (they do not propagate to the root logger)."""

    def __enter__(self):
        import logging

        from diffusers.utils import logging as dlogging

        self.records: list[str] = []
        outer = self

        class Handler(logging.Handler):
            def emit(self, record):
                outer.records.append(record.getMessage())

        self.handler = Handler(level=logging.WARNING)
        self.logger = dlogging.get_logger("diffusers")
        self.logger.addHandler(self.handler)
        return self.records

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)


def short_text_adapter(family: str, max_sequence_length: int, **overrides):
    """The tiny adapter of ``family`` with short text sequences (fast; call the pipeline alike)."""
    adapter = build_tiny_adapter(family, **overrides)
    adapter.max_sequence_length = max_sequence_length
    return adapter


def start_noise(adapter, *size: int, batch: int = 1, seed: int = 7) -> torch.Tensor:
    """Seeded Gaussian latents of ``batch`` samples at ``size`` (height, width[, frames])."""
    return torch.randn(batch, *adapter.latent_shape(*size), generator=seeded(seed))


def pipeline_latents(output) -> torch.Tensor:
    """The ``output_type="latent"`` result of a pipeline call (``images``, or ``frames`` for video)."""
    return output.frames if hasattr(output, "frames") else output.images


def check_flow_chain_matches_pipeline(adapter, start, to_pipe, call_kwargs, prompts=PROMPTS[:1], steps: int = 3,
                                      from_chain=None):
    """The one sampling chain at noise_level 0 = the pipeline's own ``__call__`` from the same noise.
    ``from_chain``: the chain's final latents in the pipeline's ``output_type="latent"`` layout
    (default ``to_pipe``, when the pipeline returns the layout its ``latents=`` takes)."""
    from_chain = from_chain or to_pipe
    with torch.no_grad():
        expected = pipeline_latents(adapter.pipe(prompt=list(prompts), latents=to_pipe(start.clone()), num_inference_steps=steps,
                                                 output_type="latent", **call_kwargs))
        chain = sample(adapter, prompts, num_inference_steps=steps, noise_level=0.0, latents=start.clone(), decode=False)
        torch.testing.assert_close(from_chain(chain.final), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(chain.log_probs, torch.zeros(len(prompts), steps))
    return chain


def check_flow_lora_round_trip(family, tmp_path, start, to_pipe, call_kwargs, steps: int = 2, from_chain=None, **attrs):
    """save_lora -> plain ``pipe.load_lora_weights`` (no unexpected/missing-key warning) samples what
    the adapter samples, and not what the base model samples. ``attrs``: adapter settings (e.g. a
    short ``max_sequence_length``, passed to the pipeline alike in ``call_kwargs``); ``from_chain`` as
    in :func:`check_flow_chain_matches_pipeline`. A pipeline without ``load_lora_weights`` loads
    through its transformer (``diffalign.pipelines.generation.load_lora``, what ``eval`` / ``sample`` use)."""
    from diffalign.pipelines.generation import load_lora

    from_chain = from_chain or to_pipe
    adapter, _ = lora_adapter(family)
    for name, value in attrs.items():
        setattr(adapter, name, value)
    with torch.no_grad():
        ours = sample(adapter, PROMPTS[:1], num_inference_steps=steps, noise_level=0.0, latents=start.clone(),
                      decode=False).final
    adapter.save_lora(tmp_path)
    pipe = build_tiny_pipeline(family)
    call = dict(latents=to_pipe(start.clone()), num_inference_steps=steps, output_type="latent", **call_kwargs)
    with torch.no_grad():
        base = pipeline_latents(pipe(prompt=PROMPTS[:1], **call))
        with DiffusersWarnings() as warned:
            load_lora(pipe, str(tmp_path))
        loaded = pipeline_latents(pipe(prompt=PROMPTS[:1], **call))
        ours = from_chain(ours)
    assert not [w for w in warned if "unexpected keys" in w or "missing keys" in w], warned
    torch.testing.assert_close(loaded, ours, rtol=1e-4, atol=1e-4)
    assert (loaded - base).abs().max() > 1e-3


def check_flow_save_pretrained(family, pipeline_class, tmp_path, latents, timesteps, reencode: bool = True) -> None:
    """save_pretrained merges the LoRA; the folder reloads as the same class and family with the same
    output (``reencode=False``: for the same prompt embeddings, when the tiny pipeline's text settings
    are instance attributes that a reload resets)."""
    adapter, _ = lora_adapter(family)
    cond = adapter.encode_prompt(PROMPTS)
    with torch.no_grad():
        tuned = adapter.forward(latents, timesteps, cond)
    adapter.save_pretrained(tmp_path)
    pipe = DiffusionPipeline.from_pretrained(str(tmp_path))
    assert type(pipe) is pipeline_class
    loaded = load_adapter(str(tmp_path))  # family read from model_index.json
    assert loaded.family == family and not loaded.has_lora
    assert not any("lora" in n for n, _ in loaded.denoiser.named_parameters())
    with torch.no_grad():
        text = loaded.encode_prompt(PROMPTS) if reencode else cond
        torch.testing.assert_close(loaded.forward(latents, timesteps, text), tuned,
                                   rtol=1e-4, atol=1e-4)
    assert adapter.has_lora


def check_flow_training_errors(adapter, latents, generator_seed: int = 3, segments: int | None = None):
    """The training forward: x_sigma = (1 - sigma) x0 + sigma noise, target noise - x0, errors the
    mean squared error of the network's prediction (per segment along dim 1 when asked)."""
    cond = adapter.encode_prompt(PROMPTS[: len(latents)])
    errors, parts = adapter.training_errors(latents, cond, generator=seeded(generator_seed), segments=segments)
    sigma = (parts["timesteps"] / 1000).reshape(-1, *[1] * (latents.ndim - 1))
    with torch.no_grad():
        by_hand = adapter.forward((1 - sigma) * latents + sigma * parts["noise"], parts["timesteps"], cond)
    torch.testing.assert_close(parts["prediction"].detach(), by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts["target"], parts["noise"] - latents)
    err = (parts["prediction"] - parts["target"]) ** 2
    if segments:
        expected = torch.stack([c.reshape(len(c), -1).mean(1) for c in err.tensor_split(segments, dim=1)], 1)
    else:
        expected = err.reshape(len(err), -1).mean(1)
    torch.testing.assert_close(errors, expected)
    return errors, parts
