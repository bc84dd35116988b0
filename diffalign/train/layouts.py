"""The built-in offline input layouts: an encoded batch -> the per-sample errors a loss takes.

Each layout is an :class:`~diffalign.losses.InputLayout` listed in ``diffalign.losses.INPUT_LAYOUTS``
(which imports this module on first lookup). Its ``errors(adapter, batch, cond, generator, spec)``
draws the noise and timesteps the layout shares between the samples of one example, then runs the
adapter's one training forward, :meth:`~diffalign.pipelines.PipelineAdapter.training_errors`, for
the policy and (when ``spec.needs_reference``) the reference network, and returns the tensors by
the loss argument names they fill. A layout of your own is a function of the same signature
registered with :func:`diffalign.losses.register_input_layout`.

Per pair: one noise tensor and one timestep shared by winner and loser; the policy forward on
[winners; losers] with grad; the reference forward without grad.
"""
from __future__ import annotations

from typing import Any

import torch

from diffalign.losses import InputLayout, LossSpec
from diffalign.pipelines import PipelineAdapter, PromptEmbeds
from diffalign.train.encoding import conditioning

Errors = dict[str, Any]


class ExampleGenerators(torch.Generator):
    """A generator for a batch that also holds one generator per example (``rows``), each seeded from
    the example's position in the GLOBAL batch: the built-in layouts draw each example's noise and
    timestep from its own, so an example gets the same draws whether the global batch runs on one
    process or is split across several. (Used as a plain generator it is seeded like the batch.)"""

    rows: list[torch.Generator]


def _per_example(generator, n: int, draw):
    """``draw(generator, rows)`` for the whole batch, or per example (concatenated) when ``generator``
    holds one generator per example."""
    rows = getattr(generator, "rows", None)
    if rows is None:
        return draw(generator, slice(0, n))
    if len(rows) != n:
        raise ValueError(f"{len(rows)} example generators for a batch of {n}")
    parts = [draw(g, slice(i, i + 1)) for i, g in enumerate(rows)]
    return tuple(torch.cat(p) for p in zip(*parts)) if isinstance(parts[0], tuple) else torch.cat(parts)


def draw_noise_and_timesteps(adapter: PipelineAdapter, latents: torch.Tensor, generator: torch.Generator):
    """One noise tensor shaped like ``latents`` and one timestep per row (in that order; per example
    when ``generator`` is an :class:`ExampleGenerators`). ``latents`` may be [B, K, ...] (K samples
    sharing their row's timestep)."""
    def draw(gen, rows):
        x = latents[rows]
        return adapter.sample_noise(x, gen), adapter.sample_timesteps(x.shape[0], gen, device=latents.device)

    return _per_example(generator, latents.shape[0], draw)


def draw_uniform(n: int, generator: torch.Generator, device) -> torch.Tensor:
    """``n`` uniform draws in [0, 1), one per example (per example's generator when it has them)."""
    return _per_example(generator, n, lambda gen, rows: torch.rand(rows.stop - rows.start, generator=gen, device=device))


def pair_conditioning(batch: dict[str, torch.Tensor], cond: PromptEmbeds, spec: LossSpec) -> PromptEmbeds:
    """Conditioning of [first; second] halves: the shared caption twice, or each half's own caption
    (``dual_caption`` / ``caption_contrast``: ``cond_w.*`` and ``cond_l.*`` in the batch)."""
    if spec.conditioning == "shared":
        return cond.repeat(2)
    if not any(k.startswith("cond_w.") for k in batch):
        raise ValueError(
            f"method {spec.name} conditions winner and loser on their own captions: set "
            "data.columns.caption_w/caption_l (or caption_0/caption_1) to the data's caption columns"
        )
    return PromptEmbeds.cat([conditioning(batch, "cond_w"), conditioning(batch, "cond_l")])


def _pair_errors(adapter, batch, cond, generator, spec, keys, names, segments=None) -> Errors:
    x0, x1 = batch[keys[0]], batch[keys[1]]
    b = x0.shape[0]
    noise, t = draw_noise_and_timesteps(adapter, x0, generator)
    both = dict(noise=torch.cat([noise, noise]), timesteps=torch.cat([t, t]), segments=segments)
    latents, cond2 = torch.cat([x0, x1]), pair_conditioning(batch, cond, spec)
    out: Errors = {}
    policy, parts = adapter.training_errors(latents, cond2, **both)
    out[names[0]], out[names[1]] = policy.chunk(2)
    out["policy_pred_w"], out["target_w"] = parts["prediction"][:b], parts["target"][:b]
    if spec.needs_reference:
        ref, ref_parts = adapter.training_errors(latents, cond2, reference=True, **both)
        out[names[2]], out[names[3]] = ref.chunk(2)
        out["ref_pred_w"] = ref_parts["prediction"][:b]
    if "soft_labels" in batch:
        out["soft_label"] = batch["soft_labels"]
    return out


def pair_errors(adapter, batch, cond, generator, spec) -> Errors:
    """``policy_w/l``, ``ref_w/l`` [B]; the winner's ``policy_pred_w``, ``ref_pred_w``, ``target_w``;
    ``soft_label``."""
    return _pair_errors(adapter, batch, cond, generator, spec, ("w", "l"), ("policy_w", "policy_l", "ref_w", "ref_l"))


def pair_segment_errors(adapter, batch, cond, generator, spec) -> Errors:
    """``policy_0/1``, ``ref_0/1`` [B, S] per-segment errors of two videos + ``segment_labels`` [B, S]."""
    labels = batch["segment_labels"]
    out = _pair_errors(adapter, batch, cond, generator, spec, ("v0", "v1"), ("policy_0", "policy_1", "ref_0", "ref_1"),
                       segments=labels.shape[1])
    out["segment_labels"] = labels
    return out


def winner_errors(adapter, batch, cond, generator, spec) -> Errors:
    """``policy_w`` [B] of the preferred samples only."""
    noise, t = draw_noise_and_timesteps(adapter, batch["w"], generator)
    return {"policy_w": adapter.training_errors(batch["w"], cond, noise=noise, timesteps=t)[0]}


def _policy_and_reference(adapter, latents, cond, noise, t, spec) -> Errors:
    out = {"policy": adapter.training_errors(latents, cond, noise=noise, timesteps=t)[0]}
    if spec.needs_reference:
        out["ref"] = adapter.training_errors(latents, cond, noise=noise, timesteps=t, reference=True)[0]
    return out


def single_errors(adapter, batch, cond, generator, spec) -> Errors:
    """``policy``, ``ref`` [B] of unpaired samples + ``desirable`` [B]."""
    x = batch["x"]
    noise, t = draw_noise_and_timesteps(adapter, x, generator)
    return {**_policy_and_reference(adapter, x, cond, noise, t, spec), "desirable": batch["desirable"]}


def list_errors(adapter, batch, cond, generator, spec) -> Errors:
    """``policy``, ``ref`` [B, K] of K ranked images per prompt + ``scores`` [B, K]; one timestep per
    list, own noise per image."""
    x = batch["x"]
    b, k = x.shape[:2]
    noise, t = draw_noise_and_timesteps(adapter, x, generator)
    out = _policy_and_reference(adapter, x.flatten(0, 1), cond.repeat_interleave(k), noise.flatten(0, 1),
                                t.repeat_interleave(k), spec)
    return {**{name: e.view(b, k) for name, e in out.items()}, "scores": batch["scores"]}


PAIR = InputLayout("pair", "per-sample errors [B] of winner and loser, shared noise and timestep per pair",
                   "pairs", pair_errors)
PAIR_WINNER_ELEMENTS = InputLayout(
    "pair_winner_elements", "winner per-element outputs and target + loser per-sample errors (DSPO)", "pairs",
    pair_errors,
)
WINNER = InputLayout("winner", "per-sample errors [B] of the preferred sample only", "pairs", winner_errors)
SINGLE = InputLayout("single", "per-sample errors [B] of unpaired samples with a desirable flag", "unpaired",
                     single_errors)
PAIR_SEGMENTS = InputLayout("pair_segments", "per-segment errors [B, S] of two videos + segment labels",
                            "video_pairs", pair_segment_errors)
LIST = InputLayout("list", "per-sample errors [B, K] of K ranked images per prompt + their scores", "ranked",
                   list_errors)
