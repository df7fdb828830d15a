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
    from trajgraph.graphs import env_loop
    from trajgraph.testing import tiny_env

    assert tiny_env.EnvState is env_loop.EnvState and tiny_env.env_loop_graph is env_loop.env_loop_graph
    assert env_loop.EnvState.__module__ == "trajgraph.graphs.env_loop"
