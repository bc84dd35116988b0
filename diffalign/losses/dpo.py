"""Diffusion-DPO and the variants that share its loss: Flow-DPO, DCPO, TDPO.

Every function takes per-sample errors of shape [B]: each sample's squared error between the
network output and its training target, averaged (mean, never sum) over every non-batch latent
element. Winner ("w") and loser ("l") of a pair must be noised with the same noise and timestep.

DCPO and TDPO change only what the errors are computed on, not the loss, so they are
``diffusion_dpo_loss`` called on differently-conditioned forward passes (the registry in
``diffalign.losses.registry`` records which conditioning each needs):

- DCPO (Dual Caption PO; sahsaeedi/DCPO-T2I ``src/dcpo_trainer.py``): the winner image is noised and
  denoised conditioned on its own caption, the loser image on its own (different) caption; shared
  noise and timestep; released setting beta = 500 in this convention.
- TDPO (TPO's DPO form, arXiv 2509.25771): there is no second image. "Winner" = (x0, matched caption),
  "loser" = (the same x0, an LLM-perturbed mismatched caption), same noise and timestep, so
  ``policy_w``/``policy_l`` are the policy's errors on one latent under the two captions (and the same
  for the reference). The paper's extra clipping of the mismatched term is not public and is not
  applied here.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from diffalign.losses._common import check_positive, dpo_inside_term, dpo_stats, floats, per_sample_tensors

__all__ = ["DPO_KINDS", "diffusion_dpo_loss", "flow_dpo_loss"]

DPO_KINDS = ("sigmoid", "hinge")


def diffusion_dpo_loss(
    policy_w: Tensor,
    policy_l: Tensor,
    ref_w: Tensor,
    ref_l: Tensor,
    beta: float = 5000.0,
    kind: str = "sigmoid",
) -> tuple[Tensor, dict[str, float]]:
    """Diffusion-DPO (Wallace et al. 2024), official convention.

    u = -(beta/2)·((policy_w - ref_w) - (policy_l - ref_l)) per pair;
    ``kind="sigmoid"``: loss = mean(-logsigmoid(u)); ``kind="hinge"``: loss = mean(relu(1 - u)).
    beta = 5000 here equals diffusers' SD script's 2500 (that script has no 1/2).

    Forward passes the trainer provides, per pair (shared noise and timestep within the pair):
    policy with grad on winner and loser, reference without grad on winner and loser (a frozen copy
    for full fine-tuning, or the same network with adapters disabled for LoRA). Inputs are those four
    per-sample errors, each [B]; any float dtype (math runs in fp32); reference errors are detached.

    Stats: ``loss``, ``implicit_acc`` (fraction of u > 0, ties 0.5), ``inside_term`` (mean u),
    ``policy_w_err``, ``policy_l_err``, ``ref_w_err``, ``ref_l_err`` (batch means),
    ``policy_minus_ref_w`` and ``policy_minus_ref_l`` (mean policy-minus-reference error gaps; a
    steadily rising winner gap is the "likelihood displacement" warning sign).
    At initialisation (policy == reference) u = 0: loss log 2 (sigmoid) or 1 (hinge), accuracy 0.5.
    """
    if kind not in DPO_KINDS:
        raise ValueError(f"kind must be one of {DPO_KINDS}, got {kind!r}")
    beta = check_positive("beta", beta)
    policy_w, policy_l, ref_w, ref_l = per_sample_tensors(
        policy_w=policy_w, policy_l=policy_l, ref_w=ref_w, ref_l=ref_l
    )

    inside = dpo_inside_term(policy_w, policy_l, ref_w, ref_l, beta)
    if kind == "sigmoid":
        loss = -F.logsigmoid(inside).mean()
    else:
        loss = F.relu(1.0 - inside).mean()
    return loss, floats(dpo_stats(loss, inside, policy_w, policy_l, ref_w, ref_l))


def flow_dpo_loss(
    policy_w: Tensor,
    policy_l: Tensor,
    ref_w: Tensor,
    ref_l: Tensor,
    beta: float = 100.0,
    kind: str = "sigmoid",
) -> tuple[Tensor, dict[str, float]]:
    """Flow-DPO (VideoAlign, arXiv 2501.13918): Diffusion-DPO on velocity errors with a constant beta.

    Same formula and stats as :func:`diffusion_dpo_loss`, u = -(beta/2)·(Δ_policy - Δ_ref), but the
    per-sample errors are rectified-flow velocity errors mean((v_pred - (noise - x0))²) at a shared
    sigma (x_sigma = (1 - sigma)·x0 + sigma·noise, sigma drawn from the model's own shifted
    logit-normal). beta stays constant over sigma: the derived beta·(1 - sigma)² schedule is not used
    (it reward-hacks). Beta convention of flow_grpo's ``scripts/train_sd3_dpo.py``: the same -0.5·beta
    form on mean-reduced errors, default beta = 100 for SD3.5-M LoRA (``config/dpo.py``); VideoAlign
    and DenseDPO use 500 for video; Flux LoRA users report spikes at 500 with lr 1e-4.

    Forward passes: as Diffusion-DPO (policy with grad + reference without grad on winner and loser).
    """
    return diffusion_dpo_loss(policy_w, policy_l, ref_w, ref_l, beta=beta, kind=kind)
