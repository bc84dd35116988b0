"""The package's layers import only downward and no modules import each other in a cycle.

Every ``import`` / ``from ... import`` in ``diffalign/`` is read from the source (AST), including
imports inside functions (lazy imports count). The layer order is the one in docs/architecture.md.
"""
from __future__ import annotations

import ast
import os

import pytest

import diffalign

ROOT = os.path.dirname(diffalign.__file__)

#: lowest first; a module may import from its own layer and the layers before it.
LAYERS = [
    ["_compat", "config", "registry", "utils"],
    ["losses"],
    ["samplers"],
    ["geneval"],
    ["pipelines"],
    ["data"],
    ["shapes"],
    ["rewards"],
    ["export"],
    ["train"],
    ["eval", "serve"],
    ["<api>", "__main__", "cli", "demo", "demo_video", "sample_command", "train_command"],
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


MODULES = _modules()


def _imports(module: str, path: str) -> set[str]:
    """Modules of diffalign that ``module`` imports (a ``from X import name`` of a submodule counts
    as importing the submodule)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    out = set()
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in MODULES else src for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("diffalign") and target != module:
                out.add(target)
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    top = "<api>" if len(parts) == 1 else parts[1]
    assert top in LAYER_OF, f"{module}: package {top!r} is in no layer of tests/test_architecture.py / docs/architecture.md"
    return LAYER_OF[top]


def test_every_import_points_down_or_sideways():
    upward = sorted(
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in GRAPH.items() for t in targets if layer(t) > layer(m)
    )
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            # a package's __init__ re-exporting its own submodules is not a cycle with them
            if t == m.rpartition(".")[0] and m.startswith(t + "."):
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if state.get(t) is None:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The AST walk finds imports inside functions and relative imports (a checker that missed them
    would pass on any package)."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from diffalign.train import trainer\n    from ..losses import dpo\n")
    MODULES["diffalign.pipelines.fake"] = str(source)
    try:
        found = _imports("diffalign.pipelines.fake", str(source))
    finally:
        del MODULES["diffalign.pipelines.fake"]
    assert found == {"diffalign.train.trainer", "diffalign.losses.dpo"}
    assert layer("diffalign.train.trainer") > layer("diffalign.pipelines.fake")


@pytest.mark.parametrize("package", sorted({m.split(".")[1] for m in MODULES if m.count(".") >= 1}))
def test_every_package_has_a_layer(package):
    assert package in LAYER_OF
