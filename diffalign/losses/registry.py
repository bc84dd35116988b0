"""The loss registry: select a loss by name, with what the trainer must feed it; add your own.

``get_loss("dcpo")`` returns a :class:`LossSpec`: calling it calls the loss function with the spec's
default keyword arguments (overridable per call), and its fields tell the trainer which forward
passes and which conditioning the loss needs. DCPO and TDPO are Diffusion-DPO on differently
conditioned forward passes, so they differ from ``diffusion_dpo`` only in ``conditioning`` and defaults.

Both registries here are :class:`diffalign.registry.Registry` objects, open to outside code:

- ``LOSSES`` (entry-point group ``diffalign.losses``): ``@register_loss("name", inputs=..., needs_reference=...)``
  on a pure loss function, or an entry point naming a (not yet registered) :class:`LossSpec`;
- ``INPUT_LAYOUTS`` (entry-point group ``diffalign.input_layouts``): what one training example looks
  like to a loss and how the offline trainer computes it. ``@register_input_layout("name", data_kind=...)``
  on a function ``(adapter, batch, cond, generator, spec) -> {argument name: tensor}``, or an entry
  point naming an :class:`InputLayout`. The built-in offline layouts live in
  ``diffalign.train.layouts`` (imported on first lookup, so this layer never imports the trainer).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

from diffalign.losses.dense import dense_dpo_loss
from diffalign.losses.dpo import diffusion_dpo_loss, flow_dpo_loss
from diffalign.losses.dspo import dspo_loss
from diffalign.losses.kto import kto_loss
from diffalign.losses.mapo import mapo_loss
from diffalign.losses.policy_gradient import d3po_loss, ppo_loss
from diffalign.losses.rank import rankdpo_loss
from diffalign.losses.sft import sft_loss
from diffalign.losses.smpo import smpo_loss
from diffalign.registry import Registry

__all__ = [
    "CONDITIONINGS",
    "INPUT_LAYOUTS",
    "InputLayout",
    "LOSSES",
    "LossSpec",
    "get_loss",
    "register_input_layout",
    "register_loss",
]

#: ``errors(adapter, batch, cond, generator, spec) -> {loss argument name: tensor}``.
LayoutFn = Callable[..., Mapping[str, Any]]


@dataclass(frozen=True)
class InputLayout:
    """What one training example looks like to a loss, and how the offline trainer computes it.

    - ``data_kind``: the ``data.kind`` the layout reads (``pairs``, ``unpaired``, ``ranked``,
      ``video_pairs``, or a kind of your own); ``None`` for the online layouts (rollouts).
    - ``errors(adapter, batch, cond, generator, spec)``: given the model adapter (whose
      ``training_errors`` is the one training forward), the encoded batch (``w``/``l``, ``x``, ``v0``/``v1``,
      ``cond.*``, labels: see ``diffalign.train.encoding``), the conditioning of the batch's captions
      (after caption dropout), a ``torch.Generator`` and the loss's :class:`LossSpec`, returns the
      tensors the loss takes, by argument name (the trainer passes those the loss function names).
      ``None`` for the online layouts, which the online trainers compute from their rollouts.
    """

    name: str
    summary: str
    data_kind: Optional[str] = None
    errors: Optional[LayoutFn] = None


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0]


def _entries_of(kind: str, cls: type, hint: str = "") -> Callable[[str, Any], None]:
    """A registry's ``validate``: entries are ``cls`` instances whose ``name`` is the registered name."""

    def check(name: str, entry: Any) -> None:
        if not isinstance(entry, cls):
            raise TypeError(f"{kind} {name!r} must be a {cls.__name__}{hint}, got {type(entry).__name__}")
        if entry.name != name:
            raise ValueError(f"{kind} registered as {name!r} is named {entry.name!r}")

    return check


#: input layouts by name; the offline ones are defined in ``diffalign.train.layouts``.
INPUT_LAYOUTS: Registry[InputLayout] = Registry(
    "input layout",
    {
        "pair": "diffalign.train.layouts:PAIR",
        "pair_winner_elements": "diffalign.train.layouts:PAIR_WINNER_ELEMENTS",
        "winner": "diffalign.train.layouts:WINNER",
        "single": "diffalign.train.layouts:SINGLE",
        "pair_segments": "diffalign.train.layouts:PAIR_SEGMENTS",
        "list": "diffalign.train.layouts:LIST",
        "transition": InputLayout(
            "transition", "log-probs [B] of one stored denoising transition + old log-probs + advantages"
        ),
        "transition_pair": InputLayout(
            "transition_pair", "log-probs [B] of one transition of a preferred and a dispreferred trajectory"
        ),
    },
    entry_point_group="diffalign.input_layouts",
    validate=_entries_of("input layout", InputLayout),
)


def register_input_layout(
    name: str, errors: LayoutFn | None = None, *, data_kind: str, summary: str = "", override: bool = False
):
    """Register ``errors(adapter, batch, cond, generator, spec)`` as the input layout ``name`` (see
    :class:`InputLayout`); used bare it is a decorator and returns the function unchanged."""

    def add(fn: LayoutFn) -> LayoutFn:
        INPUT_LAYOUTS.register(name, InputLayout(name, summary or _first_line(fn.__doc__), data_kind, fn),
                               override=override)
        return fn

    return add(errors) if errors is not None else add


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

    - ``inputs``: a name of ``INPUT_LAYOUTS``.
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
            raise ValueError(
                f"{self.name}: unknown inputs layout {self.inputs!r}; choose one of: {', '.join(INPUT_LAYOUTS.names())} "
                "(or register yours first with register_input_layout)"
            )
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"{self.name}: unknown conditioning {self.conditioning!r}; choose one of: {', '.join(CONDITIONINGS)}"
            )
        unknown = set(self.defaults) - set(self.parameters)
        if unknown:
            raise ValueError(f"{self.name}: defaults {sorted(unknown)} are not arguments of {self.fn.__name__}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def parameters(self) -> tuple[str, ...]:
        """Argument names of the underlying loss function, in order."""
        return tuple(inspect.signature(self.fn).parameters)

    @property
    def required(self) -> tuple[str, ...]:
        """Arguments without a default that the trainer must supply (``defaults`` count as given)."""
        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.default is p.empty and p.name not in self.defaults
                     and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

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


#: losses by name (``LOSSES.names()``, ``"dpo" in LOSSES``, ``LOSSES.get(name)``).
LOSSES: Registry[LossSpec] = Registry(
    "loss",
    _specs(),
    entry_point_group="diffalign.losses",
    aliases={"dpo": "diffusion_dpo", "ddpo": "ppo", "flow_grpo": "ppo"},
    validate=_entries_of("loss", LossSpec, " (or register a function with register_loss)"),
)


def register_loss(
    name: str,
    fn: Callable[..., tuple[Any, dict[str, float]]] | None = None,
    *,
    inputs: str,
    needs_reference: bool,
    conditioning: str = "shared",
    defaults: Mapping[str, Any] | None = None,
    summary: str = "",
    override: bool = False,
):
    """Register the pure loss function ``fn`` as ``name`` with its input spec (see :class:`LossSpec`);
    used bare it is a decorator and returns the function unchanged::

        @register_loss("my_loss", inputs="pair", needs_reference=True)
        def my_loss(policy_w, policy_l, ref_w, ref_l, beta=1000.0): ...
    """

    def add(f: Callable[..., tuple[Any, dict[str, float]]]) -> Callable[..., tuple[Any, dict[str, float]]]:
        spec = LossSpec(name, f, inputs, needs_reference, conditioning, dict(defaults or {}),
                        summary or _first_line(f.__doc__))
        LOSSES.register(name, spec, override=override)
        return f

    return add(fn) if fn is not None else add


def get_loss(name: str) -> LossSpec:
    """The :class:`LossSpec` registered under ``name`` (also accepts ``dpo``, ``ddpo``, ``flow_grpo``);
    an unknown name raises ``UnknownNameError`` (a ``KeyError`` and ``ValueError``) listing the choices."""
    return LOSSES.get(name)
