"""The package's floors: imports only run downward, and no module imports itself round a cycle.

Both checks read every ``import`` of the package with ``ast``, at module top AND inside functions
(a function-level import still makes the two modules depend on each other; it only hides it).
The allowed order is written down here once (and in the README's layout section):
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

FLOORS = (
    ("errors", "config", "input_spec", "_io", "_hashing", "_lazy", "_memory", "_quiet", "_safe_load", "onnx_io"),
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


LAZY_INTERNAL_IMPORTS = {
    ("sparsekit/backends/trt_report.py", "sparsekit.analyze.onnx_layers"):
        "engines build and run without torch; only the per-layer report of an engine pair walks the ONNX with torch-based helpers",
    ("sparsekit/backends/trt_report.py", "sparsekit.sparsify.check"): "as above: the 2:4 check of the ONNX weights imports torch",
    ("sparsekit/cli/common.py", "sparsekit.models.source"): "every command's parser imports cli.common; loading a model imports torch",
    ("sparsekit/cli/common.py", "sparsekit.tasks"): "as above: the task registry imports torch",
    ("sparsekit/cli/common.py", "sparsekit.tasks.data_task"): "as above",
    ("sparsekit/cli/common.py", "sparsekit.data.calib"): "as above: calibration from user data imports torch",
    ("sparsekit/sparsify/check_file.py", "sparsekit.models.source"): "checking an ONNX file needs no torch (a small file in well under 2 s); a checkpoint loads it",
    ("sparsekit/models/calib_settings.py", "sparsekit.models.calib"):
        "a config every parser and recipe imports; loading calibration batches imports torch",
}
"""Function-level ``sparsekit.*`` imports outside the commands' own modules, each with its reason.
Everything else is imported at module top (heavy third-party packages through ``sparsekit._lazy``)."""

COMMAND_MODULE = "sparsekit/cli/cmd_"


def _function_level_imports_of(path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` of every ``sparsekit.*`` import inside a function body of ``path``."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sparsekit"):
                found.append((node.module, node.lineno))
            elif isinstance(node, ast.Import):
                found += [(a.name, node.lineno) for a in node.names if a.name.startswith("sparsekit")]
    return found


def function_level_imports() -> list[tuple[str, str, int]]:
    """``(file, imported module, line)`` of every function-level ``sparsekit.*`` import of the package."""
    return sorted({(str(p.relative_to(ROOT.parent)), t, line) for p in MODULES.values() for t, line in _function_level_imports_of(p)})


@pytest.fixture(scope="module")
def parser_modules() -> set[str]:
    """The ``sparsekit.*`` modules that building the CLI parser (``sparsekit --help``) imports."""
    code = "import sys, sparsekit.cli.main; print(' '.join(m for m in sys.modules if m.startswith('sparsekit')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    return set(proc.stdout.split())


def test_internal_imports_sit_at_module_top_unless_they_keep_a_light_module_light(parser_modules):
    """A command module may import the library inside ``run`` (``--help`` stays free of torch and
    ModelOpt), but not a module the parser has loaded anyway; other modules import at top except
    the reasoned entries of :data:`LAZY_INTERNAL_IMPORTS`."""
    bad = []
    for rel, target, line in function_level_imports():
        if rel == "sparsekit/__init__.py":
            continue
        if rel.startswith(COMMAND_MODULE):
            if target in parser_modules:
                bad.append(f"{rel}:{line} imports {target} inside a function, but the parser loads it anyway: import it at the top")
        elif (rel, target) not in LAZY_INTERNAL_IMPORTS:
            bad.append(f"{rel}:{line} imports {target} inside a function: import it at the top, or add it to LAZY_INTERNAL_IMPORTS with the reason")
    assert bad == []


def test_every_lazy_internal_import_listed_is_still_there():
    present = {(rel, target) for rel, target, _ in function_level_imports()}
    assert sorted(set(LAZY_INTERNAL_IMPORTS) - present) == []


def test_the_parser_loads_no_heavy_package():
    """``sparsekit --help`` builds every command's parser: none of them may import torch, ONNX or ModelOpt."""
    code = ("import sys, sparsekit.cli.main\n"
            "print(' '.join(m for m in ('torch', 'onnx', 'onnxruntime', 'modelopt', 'tensorrt', 'transformers', 'numpy', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert proc.stdout.split() == []


def test_the_import_check_sees_a_function_level_import(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("from sparsekit.errors import OnnxModelError\n\n\ndef late():\n    if True:\n        from sparsekit.errors import SparsekitError\n    return SparsekitError\n")
    assert _function_level_imports_of(path) == [("sparsekit.errors", 6)]
