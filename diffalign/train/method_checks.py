"""Checks of an offline run's method against its loss arguments and data, before anything loads.

- a loss argument the method does not take is a one-line :class:`~diffalign.config.ConfigError`;
- a numeric loss argument more than :data:`FAR_FACTOR` times away from the method's own default
  (``loss.beta=5000`` for MaPO, whose default is 0.1) is a warning naming the default;
- the data kind must be the one the method trains on; a method on single examples (KTO) also trains
  on pairs with ``data.unpaired_from_pairs=true`` (each pair gives a desirable and an undesirable
  example), and the error for pairs without the flag says so.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from typing import Any

from diffalign.config import ConfigError

#: a given loss argument this many times above or below the method's default gets a warning.
FAR_FACTOR = 100.0


def loss_defaults(spec) -> dict[str, Any]:
    """The method's own default loss arguments (its spec's ``defaults`` over the function's)."""
    params = inspect.signature(spec.fn).parameters
    found = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    return {**found, **spec.defaults}


def far_from_defaults(spec, given: dict[str, Any]) -> list[str]:
    """One line per numeric argument in ``given`` more than :data:`FAR_FACTOR` x from its default."""
    lines = []
    for name, value in given.items():
        default = loss_defaults(spec).get(name)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, default))
        if not numeric or not default or not value or not math.isfinite(value):
            continue
        ratio = abs(value / default)
        if ratio > FAR_FACTOR or ratio < 1 / FAR_FACTOR:
            lines.append(f"loss.{name}={value:g} is far from {spec.name}'s default {default:g} "
                         f"({ratio:.3g} x); check it was meant for {spec.name}")
    return lines


def check_method(config, spec, layout):
    """Raise a one-line ``ConfigError`` for loss arguments or data that do not fit the method, warn
    about far-off values; return the data config to build (``kind=unpaired`` for pairs read as single
    examples)."""
    unknown = sorted(set(config.loss) - set(spec.parameters))
    if unknown:
        raise ConfigError(f"loss.{unknown[0]}: not an argument of {config.method} (arguments: {', '.join(spec.parameters)})")
    if layout.errors is None:
        raise ConfigError(f"method {config.method} needs rollouts, not an offline data set (use the online trainer)")
    for line in far_from_defaults(spec, dict(config.loss)):
        warnings.warn(line, stacklevel=3)
    data, wanted = config.data, layout.data_kind
    if wanted == "unpaired" and data.unpaired_from_pairs and data.kind in ("pairs", "unpaired"):
        return dataclasses.replace(data, kind="unpaired")
    if data.kind != wanted:
        hint = " (or data.unpaired_from_pairs=true to train on pairs)" if wanted == "unpaired" and data.kind == "pairs" else ""
        raise ConfigError(f"method {config.method} trains on data.kind={wanted}{hint}, but data.kind={data.kind}")
    return data
