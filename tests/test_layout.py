"""The layout matches the imports (issue 9.3): the library never imports its test kit.

`trajgraph.testing` (fakes, tiny environments) is for tests and users' tests; the
library, the ready-made graphs and the adapters must run without it. Read from the
source (imports inside functions too), so a lazy import cannot hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_library_module_imports_the_test_kit() -> None:
    sources = [p for folder in ("trajgraph", "graphs", "adapters") for p in (ROOT / folder).rglob("*.py")
               if "testing" not in p.relative_to(ROOT).parts]
    assert len(sources) > 50
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n == "trajgraph.testing" or n.startswith("trajgraph.testing."))
                 for p in sources}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_env_loop_state_and_builder_are_the_librarys_and_the_kit_reuses_them() -> None:
    from trajgraph import envloop
    from trajgraph.testing import tiny_env

    assert tiny_env.EnvState is envloop.EnvState and tiny_env.env_loop_graph is envloop.env_loop_graph
    assert envloop.EnvState.__module__ == "trajgraph.envloop.loop"


# -- the import graph (issue 17): one-way, private means private, no cycles -------------------------

LIBRARY = ("trajgraph", "graphs", "adapters")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("graphs", "adapters"):  # installed as trajgraph.graphs / trajgraph.adapters
        parts = ["trajgraph", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for folder in LIBRARY for p in (ROOT / folder).rglob("*.py")}


def _package_of(module: str) -> str:
    """trajgraph.store.sqlite -> trajgraph.store; trajgraph.errors -> trajgraph.errors; adapters/graphs are one package each."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports_of(module: str, *, top_level_only: bool) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every import; top_level_only skips those inside functions."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, [], child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append((_resolve(module, child, path.name == "__init__.py"), [a.name for a in child.names], child.lineno))
            visit(child)

    visit(tree)
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_another_packages_private_names() -> None:
    """`_name` modules and names stay inside their package; `trajgraph._internal` is the shared exception."""
    offenders = []
    for module in MODULES:
        for target, names, line in _imports_of(module, top_level_only=False):
            if not target.startswith("trajgraph") or target.startswith("trajgraph._internal"):
                continue
            if _package_of(target) == _package_of(module):
                continue
            hidden = [part for part in target.split(".")[1:] if _is_private(part)] + [n for n in names if _is_private(n)]
            if hidden:
                offenders.append(f"{module}:{line} imports {target} {names}")
    assert offenders == []


def _strings(path: Path) -> list[tuple[str, int]]:
    return [(n.value, n.lineno) for n in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_the_core_never_reaches_adapters_or_graphs_by_any_route() -> None:
    """Adapters and graphs depend on the core, never the reverse: no import (at any depth) and no
    importlib string; the core finds adapters through entry points (pyproject.toml)."""
    outer = ("trajgraph.adapters", "trajgraph.graphs")
    offenders = []
    for module, path in MODULES.items():
        if module.startswith(outer):
            continue
        offenders += [f"{module}:{line} imports {target}" for target, _, line in _imports_of(module, top_level_only=False)
                      if target.startswith(outer)]
        offenders += [f"{module}:{line} names {text!r}" for text, line in _strings(path)
                      if text.startswith(outer) and " " not in text]
    assert offenders == []


def test_the_checks_see_a_planted_offence(tmp_path: Path) -> None:
    """The walkers above are not vacuous: they find a private import, an importlib string and a cycle."""
    src = "import importlib\nfrom trajgraph.store._x import y\nimportlib.import_module('trajgraph.adapters.chain')\n"
    planted = ast.parse(src)
    froms = [n for n in ast.walk(planted) if isinstance(n, ast.ImportFrom)]
    assert froms and _is_private(froms[0].module.split(".")[2])  # type: ignore[union-attr]
    assert any(isinstance(n, ast.Constant) and str(n.value).startswith("trajgraph.adapters") for n in ast.walk(planted))
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _edges(*, top_level_only: bool) -> dict[str, set[str]]:
    """Imports between the library's modules. `from pkg import sub` is an edge to the submodule; a
    module importing its own parent package is not an edge (parents load first)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, names, _ in _imports_of(module, top_level_only=top_level_only):
            heads = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES] or ([target] if target in MODULES else [])
            for head in heads:
                if head != module and not module.startswith(head + "."):
                    graph[module].add(head)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_module_level_import_cycle() -> None:
    assert _cycles(_edges(top_level_only=True)) == []


def test_no_import_cycle_even_through_imports_inside_functions() -> None:
    """A cycle hidden in a function-level import is still a cycle in the drawing of the architecture."""
    assert _cycles(_edges(top_level_only=False)) == []
