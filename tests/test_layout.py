"""The one-way layout (issue 13): streams -> workers -> schemas, and inside streams
cli -> bench -> {worker, serve} -> {sample, imports} -> wire; no import circle anywhere.

Read from the source with ``ast`` (nothing is imported), so it sees function-local imports
too. ``python tests/test_layout.py`` prints the structure: each package's files and lines, the
import arrows between packages, and any circle.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("schemas", "workers", "streams")
# a package may import only packages of a lower rank (and itself)
RANK = {
    "schemas": 0,
    "workers": 1,
    "streams.wire": 2,
    "streams.sample": 3,
    "streams.imports": 3,
    "streams.worker": 4,
    "streams.serve": 4,  # vidrec serve: reads the topics the workers write, never imports them
    "streams.bench": 5,
    "streams.cli": 6,
    "streams": 6,  # streams/__init__.py
}


def modules() -> dict[str, Path]:
    out = {}
    for top in TOP:
        for p in sorted((ROOT / top).rglob("*.py")):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports (anywhere in it), resolved to known module names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n and n.split(".")[0] in TOP:
                found.add(n)
    return found


def package(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "streams" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(p, known) - {m} for m, p in mods.items()}


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in g.items():
        for d in deps:
            pm, pd = package(m), package(d)
            if pm != pd and RANK[pd] >= RANK[pm] and not d.startswith(pm + "."):
                bad.append(f"{m} -> {d}")
    return sorted(bad)


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_rank():
    assert {package(m) for m in modules()} <= set(RANK)


def test_imports_only_go_down():
    assert upward_imports(graph()) == []


def test_no_import_circle():
    assert circles(graph()) == []


def test_the_checks_see_an_upward_import_and_a_circle():
    g = {"workers.engine": {"streams.wire.topics"}, "streams.wire.topics": {"workers.engine"}}
    assert upward_imports(g) == ["workers.engine -> streams.wire.topics"]
    assert circles(g) == [["streams.wire.topics", "workers.engine"]]


def test_the_public_engine_api_resolves():
    import workers

    assert all(getattr(workers, name) is not None for name in workers.__all__)


def main() -> None:
    mods, g = modules(), graph()
    lines: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for m, p in mods.items():
        lines[package(m)][0] += 1
        lines[package(m)][1] += len(p.read_text().splitlines())
    arrows: dict[tuple[str, str], int] = defaultdict(int)
    for m, deps in g.items():
        for d in deps:
            if package(m) != package(d):
                arrows[package(m), package(d)] += 1
    print("package            files   lines")
    for pkg in sorted(lines, key=lambda k: (-RANK[k], k)):
        print(f"{pkg:<18} {lines[pkg][0]:>5} {lines[pkg][1]:>7}")
    print("\nimport arrows between packages (module pairs)")
    for (a, b), n in sorted(arrows.items(), key=lambda kv: (-RANK[kv[0][0]], kv[0])):
        print(f"{a:<18} -> {b:<18} {n:>3}")
    print(f"\nmodules {len(mods)}, arrows {sum(len(d) for d in g.values())}")
    print("upward imports:", upward_imports(g) or "none")
    print("circles:", circles(g) or "none")


if __name__ == "__main__":
    main()
