"""DenseDPO (Wu et al., NeurIPS 2025; arXiv 2506.03517): segment-level DPO for video pairs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from diffalign.losses._common import (
    as_fp32,
    check_positive,
    check_same_shape,
    dpo_inside_term,
    floats,
    implicit_accuracy,
)

__all__ = ["dense_dpo_loss"]


def _segment_labels(labels: object, shape: torch.Size) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"segment_labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.shape != shape:
        raise ValueError(
            f"shape mismatch: policy_0 has shape {tuple(shape)} but segment_labels has shape {tuple(labels.shape)}"
        )
    if labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"segment_labels must hold +1/-1/0 numbers, got dtype {labels.dtype}")
    valid = (labels == 1) | (labels == -1) | (labels == 0)
    if not bool(valid.all()):
        bad = (~valid).nonzero()[0].tolist()
        raise ValueError(
            f"segment_labels must be +1 (video 0 wins), -1 (video 1 wins) or 0 (tie); entry {bad} is "
            f"{labels[tuple(bad)].item()}"
        )
    return labels.float()


def dense_dpo_loss(
    policy_0: Tensor,
    policy_1: Tensor,
    ref_0: Tensor,
    ref_1: Tensor,
    segment_labels: Tensor,
    beta: float = 500.0,
) -> tuple[Tensor, dict[str, float]]:
    """DenseDPO loss: the Flow-DPO logistic term per labelled temporal segment.

    Inputs are errors per segment, shape [B, S]: for each pair b and aligned temporal segment s, the
    squared (velocity) error averaged over the latent elements of that segment, for the policy and the
    reference on video 0 and video 1 (shared noise and timestep within the pair).
    ``segment_labels`` [B, S]: +1 video 0 wins the segment, -1 video 1 wins, 0 tie.

    Per segment: u = -(beta/2)·l·((policy_0 - ref_0) - (policy_1 - ref_1)); segment loss
    -logsigmoid(u). Each pair averages its non-tie segments; the loss averages those per-pair values
    over the pairs that have at least one non-tie segment. If no pair in the batch has one, the loss
    is 0 and still carries a (zero) gradient graph to the policy errors, so a trainer can call
    backward unconditionally. beta = 500 (constant) as in the paper.

    Forward passes: as Flow-DPO on both videos (policy with grad, reference without grad); the
    trainer reduces each per-element squared error over channels and space, then averages the latent
    frames of each segment (the segment-to-latent-frame map is the trainer's choice; the paper only
    says "averaged over all non-tie tokens").

    Stats: ``loss``, ``implicit_acc`` (fraction of non-tie segments with u > 0, ties in u 0.5; 0.5
    when there is none), ``inside_term`` (mean u over non-tie segments), ``non_tie_fraction`` (share
    of segments with a label), ``pairs_with_signal`` (number of pairs with a non-tie segment), and the
    batch means ``policy_0_err``, ``policy_1_err``, ``ref_0_err``, ``ref_1_err``.
    """
    beta = check_positive("beta", beta)
    named = {"policy_0": policy_0, "policy_1": policy_1, "ref_0": ref_0, "ref_1": ref_1}
    policy_0, policy_1, ref_0, ref_1 = (as_fp32(name, value, ndim=2) for name, value in named.items())
    check_same_shape(policy_0=policy_0, policy_1=policy_1, ref_0=ref_0, ref_1=ref_1)
    labels = _segment_labels(segment_labels, policy_0.shape).to(policy_0.device)

    mask = labels != 0
    inside = labels * dpo_inside_term(policy_0, policy_1, ref_0, ref_1, beta)
    segment_loss = -F.logsigmoid(inside) * mask
    segments_per_pair = mask.sum(dim=1)
    has_signal = segments_per_pair > 0
    pair_loss = segment_loss.sum(dim=1) / segments_per_pair.clamp(min=1)
    num_pairs = has_signal.sum()
    loss = (pair_loss * has_signal).sum() / num_pairs.clamp(min=1)

    num_segments = mask.sum()
    labelled = inside.detach()[mask]
    stats = {
        "loss": loss,
        "implicit_acc": implicit_accuracy(labelled) if labelled.numel() else 0.5,
        "inside_term": labelled.sum() / num_segments.clamp(min=1),
        "non_tie_fraction": mask.float().mean(),
        "pairs_with_signal": num_pairs,
        "policy_0_err": policy_0.mean(),
        "policy_1_err": policy_1.mean(),
        "ref_0_err": ref_0.mean(),
        "ref_1_err": ref_1.mean(),
    }
    return loss, floats(stats)
