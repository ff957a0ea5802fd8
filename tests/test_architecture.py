"""The layering of the package: its modules import one another in one direction only.

The import graph is read from the source with :mod:`ast`, imports inside functions and ``TYPE_CHECKING``
blocks included, so that an import deferred out of the module's top cannot hide a cycle.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

import spikeglm

PACKAGE = Path(spikeglm.__file__).parent

#: Layers, from below: each module and the modules it may not reach through its imports. Data sit below
#: the model, the model (and its file) below the procedures that refit it and the analysis above it.
BELOW = {
    "spikeglm.counts": ("spikeglm.recording", "spikeglm.poglm"),
    "spikeglm.recording": ("spikeglm.poglm",),
    "spikeglm.io": ("spikeglm.poglm",),
    "spikeglm.records": ("spikeglm.selection", "spikeglm.poglm"),
    "spikeglm.significance": ("spikeglm.connectivity", "spikeglm.evaluate", "spikeglm.poglm"),
    "spikeglm.modelfile": ("spikeglm.poglm",),
    "spikeglm.io.signals": ("spikeglm.covariates", "spikeglm.recording"),
    "spikeglm.covariates": ("spikeglm.model", "spikeglm.inference", "spikeglm.poglm", "spikeglm.synthetic"),
    # The training knows neither the estimator nor its file; an objective knows nothing of the loop.
    "spikeglm.inference": ("spikeglm.poglm", "spikeglm.settings", "spikeglm.modelfile", "spikeglm.cli"),
    "spikeglm.inference.objectives": ("spikeglm.inference.trainer", "spikeglm.inference.config"),
    "spikeglm.poglm": (
        "spikeglm.bootstrap",
        "spikeglm.selection",
        "spikeglm.evaluate",
        "spikeglm.plot",
        "spikeglm.nwb_results",
    ),
}


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by the name of its ``__init__``)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of the package that one import statement of ``module`` names."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".")
            anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join(anchor + ([base] if base else []))
        # ``from package import name`` imports the module package.name where it is one.
        targets = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
        ]
    found = set()
    for target in targets:
        parts = target.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if parts:
            found.add(".".join(parts))
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package mapped to the modules of the package it imports, anywhere in its body.

    An edge goes to the module named; the ``__init__`` of the packages above it, which Python runs first,
    is left out (else every module would import the package's root, which imports them all).
    """
    modules = module_names(package)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= imported(node, name, is_package, set(modules))
        edges.discard(name)
        graph[name] = edges
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules that importing ``start`` imports, directly or through others."""
    seen: set[str] = set()
    waiting = [start]
    while waiting:
        for following in graph[waiting.pop()] - seen:
            seen.add(following)
            waiting.append(following)
    return seen


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as the list of its modules (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for following in sorted(graph.get(node, ())):
            if state.get(following) == 1:
                return [*path[path.index(following) :], following]
            if following not in state and (cycle := visit(following)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.fixture(name="graph", scope="module")
def _graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_deferred_and_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg import a\n")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from .sub import c\nimport numpy\n")
    (package / "sub" / "__init__.py").write_text("from .. import a\n")
    (package / "sub" / "c.py").write_text("from pkg.a import f\nfrom . import d\n")
    (package / "sub" / "d.py").write_text("")
    graph = import_graph(package)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": {"pkg.a"},
        "pkg.sub.c": {"pkg.a", "pkg.sub.d"},
        "pkg.sub.d": set(),
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_the_package_has_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("lower", sorted(BELOW))
def test_lower_modules_do_not_reach_the_upper_ones(graph, lower):
    assert {lower, *BELOW[lower]} <= set(graph), "a module named in BELOW is gone: update the layers"
    reached = reachable(graph, lower) & set(BELOW[lower])
    assert not reached, f"{lower} imports {', '.join(sorted(reached))}, which sit above it"


#: The most lines a function or method of the package may take, its docstring not counted (documentation
#: is welcome; a long body is hard to read and to test).
MAX_FUNCTION_LINES = 60

#: The functions allowed to be longer, each with its reason. An entry that is gone or has come within the
#: limit fails the test, so the list only shrinks.
LONG_FUNCTIONS: dict[str, str] = {}


def function_lengths(package: Path = PACKAGE) -> dict[str, int]:
    """Each function and method of the package (``path::Class.name``, nested functions by their own name
    inside their parent's) and its length in lines, from ``def`` to its end, less its docstring."""
    lengths = {}

    def visit(node: ast.AST, path: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = child.end_lineno - child.lineno + 1
                first = child.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    if isinstance(first.value.value, str):
                        length -= first.end_lineno - first.lineno + 1
                lengths[f"{path}::{prefix}{child.name}"] = length
                visit(child, path, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, path, f"{prefix}{child.name}.")
            else:
                visit(child, path, prefix)

    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        visit(tree, path.relative_to(package.parent).as_posix(), "")
    return lengths


def test_function_lengths_count_the_body_not_the_docstring(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text(
        textwrap.dedent(
            '''
            def f():
                """One
                two."""
                return 1


            class C:
                def g(self):
                    x = 1

                    def inner():
                        pass

                    return x
            '''
        )
    )
    assert function_lengths(package) == {"pkg/m.py::f": 2, "pkg/m.py::C.g": 7, "pkg/m.py::C.g.inner": 2}


def test_no_function_is_longer_than_the_limit():
    lengths = function_lengths()
    long = {name: length for name, length in lengths.items() if length > MAX_FUNCTION_LINES}
    unlisted = {name: length for name, length in long.items() if name not in LONG_FUNCTIONS}
    assert not unlisted, f"over {MAX_FUNCTION_LINES} lines (split them): {unlisted}"
    stale = sorted(set(LONG_FUNCTIONS) - set(long))
    assert not stale, (
        f"no longer over {MAX_FUNCTION_LINES} lines, or gone: remove from LONG_FUNCTIONS: {stale}"
    )
