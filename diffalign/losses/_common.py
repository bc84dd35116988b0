"""Pieces shared by every loss: input checks, the DPO inside term, implicit accuracy, stats.

Everything here is written once and reused by the loss modules; none of it is model-specific.
All math is done in fp32 whatever the input dtype (fp16/bf16 errors are upcast first).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

__all__ = [
    "as_fp32",
    "check_same_shape",
    "check_positive",
    "check_probability",
    "dpo_inside_term",
    "implicit_accuracy",
    "pair_error_stats",
    "dpo_stats",
    "per_sample_tensors",
    "floats",
]


def as_fp32(name: str, value: object, *, ndim: int | None = 1, min_ndim: int | None = None) -> Tensor:
    """Check that ``value`` is a non-empty floating tensor of the expected rank; return it in fp32.

    ``ndim`` fixes the rank exactly (per-sample errors are [B], per-segment errors [B, S]);
    ``min_ndim`` is used instead for per-element tensors of any latent shape.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(value.shape)}")
    if min_ndim is not None and value.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)}); a loss needs at least one sample")
    return value.float()


def check_same_shape(**tensors: Tensor) -> None:
    """Raise a ValueError naming the arguments if the given tensors do not all have the same shape."""
    items = list(tensors.items())
    first_name, first = items[0]
    for name, tensor in items[1:]:
        if tensor.shape != first.shape:
            raise ValueError(
                f"shape mismatch: {first_name} has shape {tuple(first.shape)} but {name} has shape "
                f"{tuple(tensor.shape)}"
            )


def per_sample_tensors(**named: object) -> list[Tensor]:
    """Validate same-shaped per-sample tensors [B] (errors, log-probs...) given by keyword; return them in fp32."""
    tensors = {name: as_fp32(name, value) for name, value in named.items()}
    check_same_shape(**tensors)
    return list(tensors.values())


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` if it is finite and > 0 (or >= 0 with ``allow_zero``); else ValueError."""
    value = float(value)
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_probability(name: str, value: Tensor) -> None:
    """Raise a ValueError if any entry of ``value`` is outside [0, 1] (NaN included)."""
    bad = ~((value >= 0) & (value <= 1))
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0]) if bad.ndim else 0
        offending = float(value.reshape(-1)[bad.reshape(-1)][0])
        raise ValueError(f"{name} must lie in [0, 1]; entry {index} is {offending}")


def dpo_inside_term(policy_w: Tensor, policy_l: Tensor, ref_w: Tensor, ref_l: Tensor, beta: float) -> Tensor:
    """Diffusion-DPO inside term u = -(beta/2)·((policy_w - ref_w) - (policy_l - ref_l)), per pair.

    Official (Salesforce) convention: the 1/2 is part of the formula, so beta = 5000 here equals
    diffusers' SD script's 2500. Reference errors are detached: the reference never gets gradient.
    u > 0 means the policy improved on the winner more than on the loser, relative to the reference.
    """
    return -0.5 * beta * ((policy_w - ref_w.detach()) - (policy_l - ref_l.detach()))


def implicit_accuracy(margin: Tensor) -> Tensor:
    """Fraction of entries with margin > 0, exact ties (margin == 0) counting 0.5; a 0-d tensor."""
    margin = margin.detach()
    return ((margin > 0).float() + 0.5 * (margin == 0).float()).mean()


def pair_error_stats(policy_w: Tensor, policy_l: Tensor, ref_w: Tensor | None, ref_l: Tensor | None) -> dict:
    """Batch means of the per-sample errors (and the policy-minus-reference gaps when a ref is given)."""
    stats = {"policy_w_err": policy_w.mean(), "policy_l_err": policy_l.mean()}
    if ref_w is not None and ref_l is not None:
        stats.update(
            ref_w_err=ref_w.mean(),
            ref_l_err=ref_l.mean(),
            policy_minus_ref_w=(policy_w - ref_w).mean(),
            policy_minus_ref_l=(policy_l - ref_l).mean(),
        )
    return stats


def dpo_stats(loss: Tensor, inside: Tensor, policy_w: Tensor, policy_l: Tensor, ref_w: Tensor, ref_l: Tensor) -> dict:
    """The stats every logistic pair loss logs: loss, implicit accuracy, mean inside term, error means."""
    stats = {"loss": loss, "implicit_acc": implicit_accuracy(inside), "inside_term": inside.mean()}
    stats.update(pair_error_stats(policy_w, policy_l, ref_w, ref_l))
    return stats


def floats(stats: Mapping[str, Tensor | float | int]) -> dict[str, float]:
    """Detach every stat and turn it into a python float with a single device sync."""
    names = list(stats)
    tensors = [
        v.detach().float().reshape(()) if isinstance(v, Tensor) else torch.tensor(float(v))
        for v in stats.values()
    ]
    device = next((t.device for t in tensors if t.device.type != "cpu"), torch.device("cpu"))
    values = torch.stack([t.to(device) for t in tensors]).tolist()
    return dict(zip(names, (float(v) for v in values)))
