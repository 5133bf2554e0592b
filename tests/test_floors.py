"""The package's floors: imports only run downward, and no module imports itself round a cycle.

Both checks read every ``import`` of the package with ``ast``, at module top AND inside functions
(a function-level import still makes the two modules depend on each other; it only hides it).
The allowed order is written down here once (and in the README's layout section):
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FLOORS = (
    ("errors", "config", "input_spec", "_io", "_hashing", "_memory", "_quiet", "_safe_load", "onnx_io"),
    ("analyze",),
    ("models",),
    ("sparsify", "quantize", "tasks", "data"),
    ("prune",),
    ("recover", "export"),
    ("recipe",),
    ("bench", "backends"),
    ("plan",),
    ("cli", "service"),
)
"""Bottom to top. A package may import its own floor's packages and any floor below, never above.
``sparsekit/__init__.py`` (the lazy public API) and ``__main__.py`` (the console entry) stand
outside the floors."""

ROOT = Path(__file__).resolve().parents[1] / "sparsekit"
LEVEL = {pkg: i for i, floor in enumerate(FLOORS) for pkg in floor}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every ``sparsekit.*`` module ``path`` imports (``from x import y`` counts ``x`` and ``x.y``), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sparsekit"):
            found += [(node.module, node.lineno)] + [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("sparsekit")]
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}


def test_every_package_sits_on_a_floor():
    packages = {_package(m) for m in MODULES} - {None, "__init__", "__main__"}
    assert packages <= set(LEVEL), f"packages without a floor: {sorted(packages - set(LEVEL))}: add them to FLOORS"


def upward_imports() -> list[str]:
    bad = []
    for module, path in MODULES.items():
        here = _package(module)
        if here not in LEVEL:
            continue
        for target, line in _imports(path):
            there = _package(target)
            if there in LEVEL and LEVEL[there] > LEVEL[here]:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} ({here}) imports {target} ({there}, a floor above)")
    return sorted(set(bad))


def test_no_package_imports_a_floor_above_it():
    assert upward_imports() == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_even_through_function_level_imports():
    assert cycles(_graph()) == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected


def test_the_floor_check_sees_function_level_imports(tmp_path):
    """An import inside a function counts: the check would have failed on the code before the floors held."""
    source = "def f():\n    from sparsekit.cli.main import main\n"
    path = tmp_path / "x.py"
    path.write_text(source)
    assert ("sparsekit.cli.main", 2) in _imports(path)
