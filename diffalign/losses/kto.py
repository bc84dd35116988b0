"""Diffusion-KTO (Li et al., NeurIPS 2024; code jacklishufan/diffusion-kto): unpaired preferences."""
from __future__ import annotations

import torch
from torch import Tensor

from diffalign.losses._common import check_positive, floats, implicit_accuracy, per_sample_tensors

__all__ = ["kto_loss"]


def _as_bool_labels(desirable: object, batch: int) -> Tensor:
    if not isinstance(desirable, Tensor):
        raise TypeError(f"desirable must be a torch.Tensor of bools, got {type(desirable).__name__}")
    if desirable.shape != (batch,):
        raise ValueError(
            f"shape mismatch: policy has shape ({batch},) but desirable has shape {tuple(desirable.shape)}"
        )
    if desirable.dtype == torch.bool:
        return desirable
    if desirable.is_floating_point() or desirable.is_complex():
        raise TypeError(f"desirable must be a bool (or 0/1 integer) tensor, got dtype {desirable.dtype}")
    if bool(((desirable != 0) & (desirable != 1)).any()):
        raise ValueError("desirable must hold only 0/1 (False/True) values")
    return desirable.bool()


def kto_loss(
    policy: Tensor,
    ref: Tensor,
    desirable: Tensor,
    beta: float = 1000.0,
    reference_point: Tensor | float | None = None,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """Diffusion-KTO loss with the released default value function (``halo=sigmoid``, ``bce_offset=none``).

    Per sample: implicit log-ratio g = ref - policy (errors, so g > 0 means the policy denoises it
    better than the reference); y = +1 if ``desirable`` else -1; reference point
    z = max(0, mean(g)) over the batch, detached; loss = mean(lambda_y·(1 - sigmoid(y·beta·(g - z))))
    with lambda_y = ``desirable_weight`` / ``undesirable_weight`` (1 and 1 in the release). No 1/2
    factor: beta = 1000 here is comparable in scale to Diffusion-DPO's 2000.

    ``reference_point`` overrides z (used as given, detached). The released trainer all-reduces the
    batch mean across processes before clamping; a multi-process trainer reproduces that by passing
    ``max(0, mean over all processes of mean(ref - policy))``.

    Forward passes: unpaired single samples, each with its own noise and timestep; policy with grad
    and reference without grad on each. ``policy``, ``ref``: per-sample errors [B]; ``desirable``:
    bool [B] (0/1 integers accepted).

    Stats: ``loss``, ``implicit_acc`` (fraction with y·(g - z) > 0, ties 0.5), ``reference_point``
    (z), ``log_ratio_mean`` (mean g), ``log_ratio_desirable`` / ``log_ratio_undesirable`` (mean g over
    each label, 0 when the batch has none), ``num_desirable``, ``num_undesirable``, ``policy_err``,
    ``ref_err``.
    """
    beta = check_positive("beta", beta)
    desirable_weight = check_positive("desirable_weight", desirable_weight, allow_zero=True)
    undesirable_weight = check_positive("undesirable_weight", undesirable_weight, allow_zero=True)
    policy, ref = per_sample_tensors(policy=policy, ref=ref)
    labels = _as_bool_labels(desirable, policy.shape[0]).to(policy.device)

    log_ratio = ref.detach() - policy
    if reference_point is None:
        z = log_ratio.detach().mean().clamp(min=0.0)
    else:
        z = torch.as_tensor(reference_point, dtype=torch.float32, device=policy.device).detach()
        if z.numel() != 1:
            raise ValueError(f"reference_point must be a scalar, got shape {tuple(z.shape)}")
        z = z.reshape(())
    sign = labels.float() * 2.0 - 1.0
    margin = sign * beta * (log_ratio - z)
    weight = torch.where(labels, desirable_weight, undesirable_weight).float()
    loss = (weight * (1.0 - torch.sigmoid(margin))).mean()

    num_desirable = labels.sum()
    num_undesirable = (~labels).sum()
    g = log_ratio.detach()
    stats = {
        "loss": loss,
        "implicit_acc": implicit_accuracy(margin),
        "reference_point": z,
        "log_ratio_mean": g.mean(),
        "log_ratio_desirable": (g * labels).sum() / num_desirable.clamp(min=1),
        "log_ratio_undesirable": (g * ~labels).sum() / num_undesirable.clamp(min=1),
        "num_desirable": num_desirable,
        "num_undesirable": num_undesirable,
        "policy_err": policy.mean(),
        "ref_err": ref.mean(),
    }
    return loss, floats(stats)
