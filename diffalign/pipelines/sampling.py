"""The one sampling chain of diffalign, on the model adapter's primitives.

One step is :func:`guided_step`: the guided network output (``adapter.guided_forward``, so CFG runs
both branches in one batched forward, exactly as in training) followed by ``adapter.sampler_step``
(which also returns the step's log-probability). Everything that samples through an adapter goes
through it: online trainers' rollouts (:func:`sample_chain`), the training re-evaluation of stored
transitions (:func:`transition_log_prob`), reward-gradient chains and :func:`sample` (prompts in,
trajectory and decoded images out). Rollouts and re-evaluation use the same network (the
accelerate-prepared one the trainer binds), dtype and guidance, which is what makes the first
update's importance ratio exactly 1. With ``noise_level=0`` the chain is the family pipeline's own
deterministic sampler (DDIM eta 0 / flow Euler): the family tests compare it with ``pipe(...)``.

``sample_chain`` also serves the reward-gradient trainers: steps before ``grad_from`` run without
a graph, the later ones keep it (optionally gradient-checkpointed per step, so the activations of
only one denoiser call are alive at a time during the backward).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.utils.checkpoint

from diffalign.pipelines.base import PipelineAdapter
from diffalign.pipelines.conditioning import PromptEmbeds


@dataclass
class Guidance:
    """The conditioning of a batch: prompt embeddings, unconditional embeddings (None = no CFG)
    and the guidance scale."""

    cond: PromptEmbeds
    uncond: PromptEmbeds | None = None
    scale: float = 1.0

    def select(self, index) -> "Guidance":
        uncond = self.uncond[index] if self.uncond is not None else None
        return Guidance(self.cond[index], uncond, self.scale)

    @property
    def guided(self) -> bool:
        return self.uncond is not None and self.scale != 1.0


def model_input(scheduler, x: torch.Tensor, t) -> torch.Tensor:
    """``scheduler.scale_model_input`` where the scheduler has one (identity for DDIM and flow)."""
    scale = getattr(scheduler, "scale_model_input", None)
    return scale(x, t) if scale is not None else x


def guided_output(
    adapter: PipelineAdapter, scheduler, x: torch.Tensor, t, guidance: Guidance, detach_uncond: bool = False
) -> torch.Tensor:
    """The network output at ``(x, t)`` with classifier-free guidance. ``detach_uncond`` stops the
    gradient through the unconditional branch (Flow-GRPO's July-2025 training forward)."""
    uncond = guidance.uncond if guidance.guided else None
    return adapter.guided_forward(model_input(scheduler, x, t), t, guidance.cond, uncond, guidance.scale, detach_uncond)


def guided_step(
    adapter: PipelineAdapter,
    scheduler,
    x: torch.Tensor,
    t,
    guidance: Guidance,
    noise_level: float | None,
    *,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    detach_uncond: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sampler step: ``(x_next, log_prob [B], network output)``."""
    out = guided_output(adapter, scheduler, x, t, guidance, detach_uncond)
    x_next, log_prob = adapter.sampler_step(
        scheduler, out, t, x, noise_level=noise_level, prev_sample=prev_sample, generator=generator
    )
    return x_next, log_prob, out


def transition_log_prob(
    adapter: PipelineAdapter,
    scheduler,
    latents: torch.Tensor,
    next_latents: torch.Tensor,
    timesteps: torch.Tensor,
    guidance: Guidance,
    noise_level: float | None,
    detach_uncond: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob [B] of stored transitions ``latents -> next_latents`` at per-sample ``timesteps``
    under the current network (with grad), and the network output."""
    _, log_prob, out = guided_step(
        adapter, scheduler, latents, timesteps, guidance, noise_level, prev_sample=next_latents, detach_uncond=detach_uncond
    )
    return log_prob, out


@dataclass
class Chain:
    """A sampled chain. ``final``: the last latents (with graph when steps kept it). The stored
    transitions (steps selected by ``store``): ``latents``/``next_latents`` [B, S, ...],
    ``log_probs`` [B, S], ``timesteps`` [B, S]; ``step_indices`` the loop index of each stored step."""

    final: torch.Tensor
    latents: torch.Tensor | None = None
    images: torch.Tensor | None = None
    next_latents: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    timesteps: torch.Tensor | None = None
    step_indices: list[int] | None = None
    #: the transition means of the stored steps [B, S, ...] (``store_means=True``).
    means: torch.Tensor | None = None


def sample_chain(
    adapter: PipelineAdapter,
    scheduler,
    x: torch.Tensor,
    guidance: Guidance,
    noise_levels: Sequence[float | None],
    *,
    generator: torch.Generator | None = None,
    store: Sequence[bool] | None = None,
    grad_from: int | None = None,
    stop_at: int | None = None,
    checkpoint: bool = False,
    store_means: bool = False,
) -> Chain:
    """Run the sampling loop from ``x`` with ``noise_levels[i]`` at step ``i``.

    ``store``: which steps' transitions to keep (detached). ``grad_from``: steps ``i >= grad_from``
    keep the autograd graph (None = no step does); earlier steps run under ``no_grad``.
    ``stop_at``: stop before step ``stop_at`` (``final`` is then the latents entering it).
    ``checkpoint``: recompute each graph-keeping denoiser call in the backward instead of storing
    its activations. ``store_means``: keep the stored steps' transition means too (GRPO-Guard's
    RatioNorm needs the behaviour policy's).
    """
    timesteps = scheduler.timesteps
    n = len(timesteps) if stop_at is None else stop_at
    if len(noise_levels) != len(timesteps):
        raise ValueError(f"{len(noise_levels)} noise levels for a schedule of {len(timesteps)} steps")
    kept: dict[str, list] = {"latents": [], "next": [], "logp": [], "t": [], "i": [], "mean": []}
    for i in range(n):
        t = timesteps[i]
        with_grad = grad_from is not None and i >= grad_from and torch.is_grad_enabled()
        with torch.set_grad_enabled(with_grad):
            if with_grad and checkpoint:
                out = torch.utils.checkpoint.checkpoint(
                    _checkpointed_output, adapter, scheduler, x, t, guidance, use_reentrant=False
                )
                x_next, log_prob = adapter.sampler_step(
                    scheduler, out, t, x, noise_level=noise_levels[i], generator=generator
                )
            else:
                x_next, log_prob, out = guided_step(adapter, scheduler, x, t, guidance, noise_levels[i], generator=generator)
        if store is not None and store[i]:
            if store_means:
                kept["mean"].append(adapter.transition_moments(scheduler, out, t, x, noise_level=noise_levels[i]).mean.detach())
            kept["latents"].append(x.detach())
            kept["next"].append(x_next.detach())
            kept["logp"].append(log_prob.detach())
            kept["t"].append(torch.as_tensor(t, device=x.device).expand(x.shape[0]))
            kept["i"].append(i)
        x = x_next
    if not kept["i"]:
        return Chain(final=x)
    return Chain(
        final=x,
        latents=torch.stack(kept["latents"], dim=1),
        next_latents=torch.stack(kept["next"], dim=1),
        log_probs=torch.stack(kept["logp"], dim=1),
        timesteps=torch.stack(kept["t"], dim=1),
        step_indices=kept["i"],
        means=torch.stack(kept["mean"], dim=1) if kept["mean"] else None,
    )


def sample(
    adapter: PipelineAdapter,
    prompts: Sequence[str] | PromptEmbeds,
    *,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.0,
    noise_level: float | None = None,
    height: int | None = None,
    width: int | None = None,
    num_frames: int | None = None,
    generator: torch.Generator | None = None,
    negative_prompt: str | None = None,
    latents: torch.Tensor | None = None,
    decode: bool = True,
) -> Chain:
    """Prompts in, a sampled :class:`Chain` out: every transition stored with its log-probability and
    the final latents decoded to ``images`` (float RGB in [0, 1]) unless ``decode=False``. Size
    defaults to the family's (``adapter.default_size()``; give it with ``latents`` of another size: the
    schedule of resolution-dependent-shift families depends on it); ``noise_level`` as in
    ``adapter.sampler_step`` (None: the family's default; 0: the deterministic sampler)."""
    cond = prompts if isinstance(prompts, PromptEmbeds) else adapter.encode_prompt(list(prompts))
    b = len(cond)
    uncond = adapter.encode_negative_prompt(negative_prompt, b) if guidance_scale != 1.0 else None
    default_h, default_w, default_f = adapter.default_size()
    height, width = height or default_h, width or default_w
    scheduler = make_sampling_scheduler(adapter, num_inference_steps, height, width, num_frames or default_f)
    if latents is None:
        latents = adapter.initial_latents(
            b, height, width, num_frames=num_frames or default_f, generator=generator, scheduler=scheduler,
        )
    steps = len(scheduler.timesteps)
    chain = sample_chain(
        adapter, scheduler, latents, Guidance(cond, uncond, guidance_scale), [noise_level] * steps,
        generator=generator, store=[True] * steps,
    )
    if decode:
        chain.images = adapter.decode_latents(chain.final)
    return chain


def make_sampling_scheduler(adapter: PipelineAdapter, num_inference_steps: int, height: int, width: int,
                            num_frames: int | None = None):
    """``adapter.sampling_scheduler`` for samples of ``height`` x ``width`` (x ``num_frames``) where the
    family's schedule depends on the size (resolution-dependent shift: FLUX, SD3.5, Qwen-Image; the video
    token count, frames included: LTX-2)."""
    fn = adapter.sampling_scheduler
    params = inspect.signature(fn).parameters
    if "num_frames" in params:
        return fn(num_inference_steps, height=height, width=width, num_frames=num_frames)
    if "height" in params:
        return fn(num_inference_steps, height=height, width=width)
    return fn(num_inference_steps)


def _checkpointed_output(adapter, scheduler, x, t, guidance):
    return guided_output(adapter, scheduler, x, t, guidance)


def step_gradient_scales(adapter: PipelineAdapter, scheduler, noise_level: float | None = None) -> torch.Tensor:
    """Per sampling step, how strongly its transition log-prob responds to the network output:
    ``|d mean / d output| / std`` (the transition mean is linear in the output), fp32 [N]; 0 for a
    deterministic step. The policy gradient of step ``i`` is ``A (x_next - mean) / std^2 d mean /
    d theta``, whose size for a sampled ``x_next`` is this scale times ``d output / d theta``: a step
    with a far larger scale than the others dominates every update."""
    scales = []
    for t in scheduler.timesteps:
        output = torch.zeros(1, 1, 1, 1, requires_grad=True)
        moments = adapter.transition_moments(scheduler, output, t, torch.zeros(1, 1, 1, 1), noise_level=noise_level)
        std = float(moments.std.reshape(-1)[0])
        (grad,) = torch.autograd.grad(moments.mean.sum(), output)
        scales.append(abs(float(grad.reshape(-1)[0])) / std if std > 0 else 0.0)
    return torch.tensor(scales)


__all__ = [
    "Chain", "Guidance", "guided_output", "guided_step", "make_sampling_scheduler", "model_input", "sample", "sample_chain",
    "step_gradient_scales", "transition_log_prob",
]
