"""The names `import trajgraph as tg` promises are what the README calls them."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import trajgraph as tg

MODULES = {"reward", "export"}  # namespaces on purpose: tg.reward.train(...), tg.export.sft_dataset(...)


def test_every_public_name_resolves_and_only_namespaces_are_modules() -> None:
    import trajgraph.export  # noqa: F401  (a submodule import must not shadow a same-named function)
    import trajgraph.replay  # noqa: F401

    for name in tg.__all__:
        value = getattr(tg, name)
        assert isinstance(value, types.ModuleType) == (name in MODULES), name
    assert inspect.isfunction(tg.replay) and inspect.isfunction(tg.fork) and inspect.isfunction(tg.diff)
    assert "run_id" in inspect.signature(tg.replay).parameters


def test_replay_is_the_function_even_when_the_submodule_was_imported_first() -> None:
    code = "import trajgraph.replay, trajgraph as tg, inspect; print(inspect.isfunction(tg.replay))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True"
