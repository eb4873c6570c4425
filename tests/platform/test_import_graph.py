"""The import graph of ``fedsim``, ``strategies`` and ``clients`` has no cycle.

Every module is parsed with ``ast`` (nothing is imported), and every import, at module level or
inside a function, is an edge to the first-party module it names (``from pkg import name`` is an
edge to ``pkg.name`` when that is a module, else to ``pkg``). A submodule importing its own parent
package is not an edge (Python finishes the parent's ``__init__`` first).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fedsim", "strategies", "clients")

# Cycles that remain, each as the sorted tuple of its modules, with why they are tolerated.
ALLOWED_CYCLES: set[tuple[str, ...]] = set()


def module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the first-party packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """First-party modules that ``module`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # import a.b.c where only a.b is a module
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    names = set(files)
    return {m: imports_of(m, p, names) for m, p in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, for the message."""
    start = min(comp)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)


def test_the_walker_sees_function_local_imports_and_relative_ones(tmp_path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import a.b\nfrom . import c\ndef f():\n    from a import d\n")
    got = imports_of("pkg.m", src, {"a", "a.b", "a.d", "pkg", "pkg.c", "pkg.m"})
    assert got == {"a.b", "pkg.c", "a.d"}
    assert find_cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z", "x"]]


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "fedsim.tasks.kind" in graph and "strategies.registry" in graph
    cycles = [c for c in find_cycles(graph) if tuple(sorted(set(c))) not in ALLOWED_CYCLES]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_base_modules_import_no_concrete_implementation() -> None:
    """The registries' base modules know their implementations only by entry point."""
    graph = import_graph()
    assert not {m for m in graph["fedsim.tasks.kind"] if m.startswith("fedsim.diffusion")}
    assert not {m for m in graph["fedsim.comm.codec"] if m.endswith("_codec")}
    assert graph["fedsim.registry"] == set()
    strategies = {m for m in graph["strategies.registry"] if m.startswith("strategies.")}
    # what a spec is, and the converter that makes a Flower Strategy class one (its check)
    assert strategies == {"strategies.spec", "strategies.flower_adapter"}
    assert "strategies.registry" not in graph["strategies.flower_adapter"]
