"""Select a loss by name from a trainer config, with what the trainer must feed it.

``get_loss("dcpo")`` returns a :class:`LossSpec`: calling it calls the loss function with the spec's
default keyword arguments (overridable per call), and its fields tell the trainer which forward
passes and which conditioning the loss needs. DCPO and TDPO are Diffusion-DPO on differently
conditioned forward passes, so they differ from ``diffusion_dpo`` only in ``conditioning`` and defaults.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from diffalign.losses.dense import dense_dpo_loss
from diffalign.losses.dpo import diffusion_dpo_loss, flow_dpo_loss
from diffalign.losses.dspo import dspo_loss
from diffalign.losses.kto import kto_loss
from diffalign.losses.mapo import mapo_loss
from diffalign.losses.policy_gradient import d3po_loss, ppo_loss
from diffalign.losses.rank import rankdpo_loss
from diffalign.losses.sft import sft_loss
from diffalign.losses.smpo import smpo_loss

__all__ = ["INPUT_LAYOUTS", "CONDITIONINGS", "LossSpec", "LOSSES", "get_loss"]

# What one training example looks like to the loss (and so which forward passes the trainer runs).
INPUT_LAYOUTS = MappingProxyType(
    {
        "pair": "per-sample errors [B] of winner and loser, shared noise and timestep per pair",
        "pair_winner_elements": "winner per-element outputs and target + loser per-sample errors (DSPO)",
        "winner": "per-sample errors [B] of the preferred sample only",
        "single": "per-sample errors [B] of unpaired samples with a desirable flag",
        "pair_segments": "per-segment errors [B, S] of two videos + segment labels",
        "list": "per-sample errors [B, K] of K ranked images per prompt + their scores",
        "transition": "log-probs [B] of one stored denoising transition + old log-probs + advantages",
        "transition_pair": "log-probs [B] of one transition of a preferred and a dispreferred trajectory",
    }
)
# How the two halves of a pair are conditioned.
CONDITIONINGS = MappingProxyType(
    {
        "shared": "every sample of an example uses the example's caption",
        "dual_caption": "winner image with its own caption, loser image with its own caption (DCPO)",
        "caption_contrast": "one image used twice: matched caption as winner, perturbed caption as loser (TDPO)",
    }
)


@dataclass(frozen=True)
class LossSpec:
    """A named loss: the function, its default keyword arguments, and what it needs from a trainer.

    - ``inputs``: a key of ``INPUT_LAYOUTS``.
    - ``needs_reference``: whether reference-network forward passes are needed.
    - ``conditioning``: a key of ``CONDITIONINGS`` (``"shared"`` for everything but DCPO/TDPO).
    - ``defaults``: keyword arguments applied before the caller's (e.g. DCPO's beta = 500).
    """

    name: str
    fn: Callable[..., tuple[Any, dict[str, float]]]
    inputs: str
    needs_reference: bool
    conditioning: str = "shared"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        if self.inputs not in INPUT_LAYOUTS:
            raise ValueError(f"{self.name}: unknown inputs layout {self.inputs!r}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"{self.name}: unknown conditioning {self.conditioning!r}")
        unknown = set(self.defaults) - set(self.parameters)
        if unknown:
            raise ValueError(f"{self.name}: defaults {sorted(unknown)} are not arguments of {self.fn.__name__}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def parameters(self) -> tuple[str, ...]:
        """Argument names of the underlying loss function, in order."""
        return tuple(inspect.signature(self.fn).parameters)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, float]]:
        return self.fn(*args, **{**self.defaults, **kwargs})


def _specs() -> dict[str, LossSpec]:
    specs = [
        LossSpec("diffusion_dpo", diffusion_dpo_loss, "pair", True, summary="Diffusion-DPO (sigmoid or hinge)"),
        LossSpec("flow_dpo", flow_dpo_loss, "pair", True, summary="Flow-DPO: DPO on velocity errors, constant beta"),
        LossSpec(
            "dcpo", diffusion_dpo_loss, "pair", True, conditioning="dual_caption", defaults={"beta": 500.0},
            summary="DCPO: DPO with each image conditioned on its own caption",
        ),
        LossSpec(
            "tdpo", diffusion_dpo_loss, "pair", True, conditioning="caption_contrast",
            summary="TDPO: DPO between one image under its caption and under a perturbed caption",
        ),
        LossSpec("smpo", smpo_loss, "pair", True, summary="SmPO: DPO with per-pair soft labels"),
        LossSpec("mapo", mapo_loss, "pair", False, summary="MaPO: reference-free margin-aware loss"),
        LossSpec(
            "dspo_sd15", dspo_loss, "pair_winner_elements", True, defaults={"branch": "sd15"},
            summary="DSPO, released SD1.5 branch (score regression)",
        ),
        LossSpec(
            "dspo_sdxl", dspo_loss, "pair_winner_elements", True, defaults={"branch": "sdxl"},
            summary="DSPO, released SDXL branch (gated weighted score gap)",
        ),
        LossSpec("kto", kto_loss, "single", True, summary="Diffusion-KTO on unpaired samples"),
        LossSpec("dense_dpo", dense_dpo_loss, "pair_segments", True, summary="DenseDPO: per-segment DPO for video"),
        LossSpec("rankdpo", rankdpo_loss, "list", True, summary="RankDPO: listwise DPO with DCG weights"),
        LossSpec("sft", sft_loss, "winner", False, summary="Denoising loss on preferred samples"),
        LossSpec("ppo", ppo_loss, "transition", False, summary="DDPO / Flow-GRPO clipped surrogate"),
        LossSpec("d3po", d3po_loss, "transition_pair", True, summary="D3PO per-step preference loss"),
    ]
    return {spec.name: spec for spec in specs}


LOSSES: Mapping[str, LossSpec] = MappingProxyType(_specs())
_ALIASES = MappingProxyType({"dpo": "diffusion_dpo", "ddpo": "ppo", "flow_grpo": "ppo"})


def get_loss(name: str) -> LossSpec:
    """The :class:`LossSpec` registered under ``name`` (also accepts ``dpo``, ``ddpo``, ``flow_grpo``)."""
    key = _ALIASES.get(name, name)
    if key not in LOSSES:
        known = ", ".join(sorted(set(LOSSES) | set(_ALIASES)))
        raise KeyError(f"unknown loss {name!r}; known losses: {known}")
    return LOSSES[key]
