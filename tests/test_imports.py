"""The house has no import cycle (issue 13): every import of the package, module level or inside a
function, read from the source with :mod:`ast`; and no ``importlib.import_module`` to dodge one."""

from __future__ import annotations

import ast
from pathlib import Path

import simulate

ROOT = Path(simulate.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = ["simulate", *f.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """The package modules ``module`` imports, anywhere in its source."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            subs = {f"{name}.{a.name}" for a in node.names} & MODULES.keys()
            if subs:
                deps |= subs  # `from . import x`: the submodule x (its package is being imported already)
            if name in MODULES and len(subs) < len(node.names):
                deps.add(name)
    deps.discard(module)
    # a module importing its own package's __init__ while that package imports it is Python's
    # normal package initialisation, not a cycle between stages
    return {d for d in deps if not module.startswith(d + ".")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    assert len(graph) > 40
    assert graph["simulate.runner"] >= {"simulate.store", "simulate.replicate"}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_module_to_dodge_a_cycle():
    for module, path in MODULES.items():
        assert "import_module" not in path.read_text(encoding="utf-8"), module


def test_the_kernels_import_nothing_above_them():
    for module, path in MODULES.items():
        if module.startswith("simulate.kernels"):
            above = {d for d in _imports(module, path) if not d.startswith("simulate.kernels")}
            assert above == set(), (module, above)
