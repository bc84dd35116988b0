"""The one registry mechanism of diffalign: losses, rewards, trainers, model families and detectors.

A :class:`Registry` maps names to objects. Entries are added three ways:

- ``@REGISTRY.register("name")`` (or ``REGISTRY.register("name", obj)``) from any code, inside or
  outside the package;
- built-in entries given as ``"module:attribute"`` strings, imported only on first lookup, so
  importing a registry never imports the heavy modules behind it (transformers, open_clip, ...);
- entry points in the group ``diffalign.<kind>`` declared by other installed packages
  (``[project.entry-points."diffalign.rewards"] my_reward = "pkg.mod:MyReward"``), read on the first
  lookup of a name the registry does not know.

``REGISTRY.get(name)`` returns the object; an unknown name raises :class:`UnknownNameError` (a
``KeyError`` and ``ValueError``) whose one-line message names the kind and the valid choices.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; ``str()`` is the one-line message (not KeyError's quoted repr)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def import_path(path: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{path!r} is not a 'module:attribute' path")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names -> objects of one kind (see the module docstring).

    ``on_resolve(name, obj)`` runs once when an entry is first resolved (e.g. to record the name a
    reward class was registered under); ``validate(name, obj)`` runs on registration.
    """

    def __init__(
        self,
        kind: str,
        builtins: dict[str, str | T] | None = None,
        *,
        entry_point_group: str | None = None,
        aliases: dict[str, str] | None = None,
        on_resolve: Callable[[str, T], None] | None = None,
        validate: Callable[[str, T], None] | None = None,
    ):
        self.kind = kind
        self.entry_point_group = entry_point_group or f"diffalign.{kind.replace(' ', '_')}s"
        self._entries: dict[str, str | T] = dict(builtins or {})
        self._aliases: dict[str, str] = dict(aliases or {})
        self._on_resolve = on_resolve
        self._validate = validate
        self._entry_points_read = False

    # ------------------------------------------------------------------ adding
    def register(self, name: str, obj: T | None = None, *, override: bool = False):
        """Add ``obj`` as ``name``; used bare it is a decorator. A taken name raises unless
        ``override=True``."""

        def add(value: T) -> T:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
            current = self._entries.get(name)
            if current is not None and current is not value and not override:
                raise ValueError(f"a {self.kind} named {name!r} is already registered; pass override=True to replace it")
            if self._validate is not None:
                self._validate(name, value)
            self._entries[name] = value
            if self._on_resolve is not None and not isinstance(value, str):
                self._on_resolve(name, value)
            return value

        return add(obj) if obj is not None else add

    def register_lazy(self, name: str, path: str, *, override: bool = False) -> None:
        """Add ``"module:attribute"`` as ``name``, imported on first lookup."""
        if name in self._entries and not override:
            raise ValueError(f"a {self.kind} named {name!r} is already registered; pass override=True to replace it")
        self._entries[name] = path

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    # ------------------------------------------------------------------ lookup
    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            self._entries.setdefault(ep.name, ep.value)

    def canonical(self, name: str) -> str:
        """``name`` with aliases resolved."""
        return self._aliases.get(name, name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = self.canonical(name)
        if name not in self._entries:
            self._read_entry_points()
        return name in self._entries

    def names(self) -> list[str]:
        """Every registered name (built-ins, registered and entry points), sorted; aliases excluded."""
        self._read_entry_points()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        """The object registered as ``name`` (imported on first use)."""
        key = self.canonical(name) if isinstance(name, str) else name
        if key not in self:
            choices = ", ".join(self.names())
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of: {choices}")
        entry = self._entries[key]
        if isinstance(entry, str):
            try:
                entry = import_path(entry)
            except (ImportError, AttributeError) as e:
                raise ImportError(f"{self.kind} {key!r} is registered as {self._entries[key]!r}, which cannot be imported: {e}") from e
            if self._validate is not None:
                self._validate(key, entry)
            self._entries[key] = entry
            if self._on_resolve is not None:
                self._on_resolve(key, entry)
        return entry  # type: ignore[return-value]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


__all__ = ["Registry", "UnknownNameError", "import_path"]
