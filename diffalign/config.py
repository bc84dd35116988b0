"""Configs: one dataclass per job, filled from a YAML recipe plus ``key=value`` overrides.

``load_config(MyConfig, "recipe.yaml", ["lr=1e-4", "lora.rank=16"])`` merges, in order, the
dataclass defaults, the YAML file and the command-line overrides (OmegaConf dotted keys) and
returns a plain dataclass instance. Before anything is merged, the file and then the overrides are
checked against the dataclass; every problem is one line naming where it comes from (the file or
``command line``), the dotted key, and what is valid:

- an unknown key lists the valid keys of its section, with the closest one when there is one (a
  renamed key says its new name);
- a value of the wrong type names the expected type;
- a field declared with :func:`bounded` must be finite and at least its minimum (``batch_size=0``,
  a negative or NaN ``optim.lr``);
- a field declared with :func:`choice` lists its choices (a callable gives them at check time, e.g. a
  :class:`~diffalign.registry.Registry`, whose aliases are accepted too); one declared with :func:`parsed` is converted by its function (which raises a
  ``ValueError`` naming the choices), also when the dataclass is built in Python
  (:func:`apply_parsers` in ``__post_init__``).

Dataclasses may declare ``renamed_keys`` (old key -> new dotted key, relative to the dataclass) and
``removed_keys`` (key -> why) as ``ClassVar`` mappings, so recipes written for an older version get
a one-line pointer instead of "unknown key".
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from typing import Any, Callable, Mapping, Sequence, TypeVar, Union

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")

COMMAND_LINE = "command line"
PYTHON = "config"


class ConfigError(ValueError):
    """A recipe or override that does not fit the config dataclass."""


# --------------------------------------------------------------------------- declaring fields
def choice(default: Any, choices: Sequence[str] | Callable[[], Sequence[str]]) -> Any:
    """A dataclass field whose value must be one of ``choices`` (or of ``choices()``, read at check time)."""
    return dataclasses.field(default=default, metadata={"choices": choices})


def parsed(default: Any, parse: Callable[[Any], Any]) -> Any:
    """A dataclass field whose value is converted by ``parse`` (which raises ``ValueError`` on a bad value)."""
    return dataclasses.field(default=default, metadata={"parse": parse})


def bounded(default: Any, minimum: float, exclusive: bool = False) -> Any:
    """A numeric dataclass field that must be finite and ``>= minimum`` (``> minimum`` when ``exclusive``)."""
    return dataclasses.field(default=default, metadata={"minimum": (minimum, exclusive)})


def out_of_bounds(value: Any, metadata: Any) -> str | None:
    """Why ``value`` breaks the field's :func:`bounded` limit (None when it keeps it or has none)."""
    limit = (metadata or {}).get("minimum")
    if limit is None or value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    minimum, exclusive = limit
    if number != number or number in (float("inf"), float("-inf")):
        return f"must be a finite number, got {value!r}"
    if number < minimum or (exclusive and number == minimum):
        return f"must be {'>' if exclusive else '>='} {minimum:g}, got {value!r}"
    return None


def field_metadata(cls: type, name: str) -> Any:
    """The metadata of field ``name``, from the nearest class of ``cls``'s bases that gives it any
    (a subclass that only changes a default, ``trainer: str = "ddpo"``, keeps the base's choices)."""
    for base in cls.__mro__:
        f = getattr(base, "__dataclass_fields__", {}).get(name)
        if f is not None and f.metadata:
            return f.metadata
    return {}


def apply_parsers(obj: Any) -> None:
    """Convert the :func:`parsed` fields of the dataclass instance ``obj`` in place (call it in ``__post_init__``)."""
    for f in dataclasses.fields(obj):
        metadata = field_metadata(type(obj), f.name)
        parse = metadata.get("parse")
        if parse is not None:
            setattr(obj, f.name, parse(getattr(obj, f.name)))
        problem = out_of_bounds(getattr(obj, f.name), metadata)
        if problem:
            raise ValueError(f"{f.name}: {problem}")


# --------------------------------------------------------------------------- checking
def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + (" or null" if len(inner) < len(args) else "")
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a section (keys: {', '.join(f.name for f in dataclasses.fields(tp))})"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _fits(tp: Any, value: Any) -> bool:
    """Whether a scalar ``value`` read from YAML fits the annotation ``tp`` (as OmegaConf converts it)."""
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return False
            return True
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    return True


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}")

    def section(self, cls: type, data: Any, prefix: str) -> None:
        where = prefix[:-1] if prefix else ""
        if not isinstance(data, dict):
            raise self.fail(f"{where or 'the config'}: expected {_describe(cls)}, got {data!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        renamed = getattr(cls, "renamed_keys", {})
        removed = getattr(cls, "removed_keys", {})
        for key, value in data.items():
            path = f"{prefix}{key}"
            if key in renamed:
                raise self.fail(f"{path} was renamed to {prefix}{renamed[key]}")
            if key in removed:
                raise self.fail(f"{path} was removed: {removed[key]}")
            if key not in fields:
                scope = f" of {where}" if where else ""
                meant = self.suggest(cls, hints, str(key), renamed)
                hint = f" (did you mean {' or '.join(repr(prefix + m) for m in meant)}?)" if meant else ""
                raise self.fail(f"unknown key {path!r}{hint}; valid keys{scope}: {', '.join(sorted(fields))}")
            self.value(hints[key], value, path, field_metadata(cls, key))

    @staticmethod
    def suggest(cls: type, hints: dict, key: str, renamed: dict) -> list[str]:
        """The keys meant by the unknown ``key``: the same name one section down (``lr`` ->
        ``optim.lr``), else the closest name (old names lead to their new ones)."""
        below = [f"{f.name}.{key}" for f in dataclasses.fields(cls)
                 if dataclasses.is_dataclass(hints[f.name]) and key in {g.name for g in dataclasses.fields(hints[f.name])}]
        if below:
            return below
        close = difflib.get_close_matches(key, [*(f.name for f in dataclasses.fields(cls)), *renamed], n=1)
        return [renamed.get(c, c) for c in close]

    def value(self, tp: Any, value: Any, path: str, metadata: Any = None) -> None:
        metadata = metadata or {}
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if "parse" in metadata:
            try:
                metadata["parse"](value)
            except ValueError as e:
                raise self.fail(f"{path}: {e}") from None
            return
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return
            inner = [a for a in args if a is not type(None)]
            tp, origin, args = inner[0], typing.get_origin(inner[0]), typing.get_args(inner[0])
        if value is None and tp is not Any:
            raise self.fail(f"{path}: expected {_describe(tp)}, got null")
        if dataclasses.is_dataclass(tp):
            self.section(tp, value, path + ".")
        elif origin is list:
            if not isinstance(value, list):
                raise self.fail(f"{path}: expected {_describe(tp)}, got {value!r}")
            for i, item in enumerate(value):
                self.value(args[0] if args else Any, item, f"{path}[{i}]", metadata)
            return
        elif origin is dict or tp is dict:
            if not isinstance(value, dict):
                raise self.fail(f"{path}: expected {_describe(tp)}, got {value!r}")
            for key, item in value.items():
                self.value(args[1] if args else Any, item, f"{path}.{key}")
        elif not _fits(tp, value):
            raise self.fail(f"{path}: expected {_describe(tp)}, got {value!r}")
        problem = out_of_bounds(value, metadata)
        if problem:
            raise self.fail(f"{path}: {problem}")
        choices = metadata.get("choices")
        if choices is not None and not isinstance(value, (list, dict)):
            valid = choices() if callable(choices) else choices  # a sequence, or a Registry (aliases count)
            if value not in valid:
                raise self.fail(f"{path}: {value!r} is not one of: {', '.join(map(str, valid))}")


def check_config(cls: type, data: Any, source: str) -> None:
    """Raise a one-line :class:`ConfigError` for the first key of ``data`` (a plain nested dict) that
    ``cls`` does not have or whose value does not fit; ``source`` names where ``data`` came from."""
    _Checker(source).section(cls, data, "")


# --------------------------------------------------------------------------- loading
def read_recipe(path: str | os.PathLike) -> dict:
    """The plain dict of a YAML recipe (one-line errors for a missing file or bad YAML)."""
    path = str(path)
    if not os.path.exists(path):
        raise ConfigError(f"recipe file not found: {path}")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as e:  # yaml syntax errors
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def read_overrides(overrides: Sequence[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values read as YAML)."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"{COMMAND_LINE}: overrides must be key=value, got: {' '.join(bad)}")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise ConfigError(f"{COMMAND_LINE}: {' '.join(str(e).split())}") from e


def load_config(cls: type[T], path: str | os.PathLike | Mapping | None = None, overrides: Sequence[str] = ()) -> T:
    """``path``: a YAML recipe, or a mapping of the same keys given in Python (checked the same way)."""
    given: list[tuple[str, dict]] = []  # (source, data), in merge order
    if isinstance(path, Mapping):
        data, path = dict(path), PYTHON
        check_config(cls, data, path)
        given.append((path, data))
    elif path is not None:
        data = read_recipe(path)
        check_config(cls, data, str(path))
        given.append((str(path), data))
    if overrides:
        data = read_overrides(overrides)
        check_config(cls, data, COMMAND_LINE)
        given.append((COMMAND_LINE, data))
    drop_scoped_keys(cls, given)
    layers: list[Any] = [OmegaConf.structured(cls), *(data for _, data in given)]
    try:
        merged = OmegaConf.merge(*layers)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:  # what the checks above let through
        key = getattr(e, "full_key", None)
        raise ConfigError(f"{path or COMMAND_LINE}: invalid config key {key!r}: {' '.join(str(getattr(e, 'msg', e)).split())}") from e
    except ValueError as e:  # a __post_init__ check
        raise ConfigError(f"{path or COMMAND_LINE}: {e}") from e
    assert dataclasses.is_dataclass(obj)
    return obj  # type: ignore[return-value]


def drop_scoped_keys(cls: type, given: list[tuple[str, dict]]) -> None:
    """Keys that belong to the value of another key (``scoped_keys = {"loss": "method"}``: the loss
    arguments belong to the method they were written for): a layer's scoped section is dropped, with
    a warning, when a later layer switches the selecting key to another value, so
    ``shapes_dpo.yaml method=mapo`` trains MaPO with MaPO's defaults, not DPO's ``loss.beta``."""
    import warnings

    for key, selector in getattr(cls, "scoped_keys", {}).items():
        default = getattr(cls, "__dataclass_fields__")[selector].default
        chosen = [data.get(selector, None) for _, data in given]
        final = next((c for c in reversed(chosen) if c is not None), default)
        current = default
        for (source, data), selected in zip(given, chosen):
            current = selected if selected is not None else current
            if key in data and current != final:
                section = data.pop(key)
                names = ", ".join(f"{key}.{k}" for k in section) if isinstance(section, dict) else key
                warnings.warn(f"{source}: {names} ignored: given for {selector}={current}, but {selector}={final} "
                              f"takes its own defaults (give {key}.NAME=VALUE for it to set one)", stacklevel=3)


def config_to_dict(cfg: Any) -> dict:
    """A plain dict of a config dataclass (for logging and saving next to outputs)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    OmegaConf.save(OmegaConf.structured(cfg), str(path))
