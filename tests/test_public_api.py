"""The names `import trajgraph as tg` promises are what the README calls them."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from pathlib import Path

import trajgraph as tg

MODULES = {"reward", "export"}  # namespaces on purpose: tg.reward.train(...), tg.export.sft_dataset(...)


def test_every_public_name_resolves_and_only_namespaces_are_modules() -> None:
    import trajgraph.export  # a submodule import must not shadow a same-named function
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


def test_the_tree_shows_the_architecture() -> None:
    """Issue 9: the top level holds the shared pieces; every concept is a package."""
    import pathlib

    root = pathlib.Path(tg.__file__).parent
    loose = sorted(p.name for p in root.glob("*.py"))
    assert loose == ["__init__.py", "errors.py", "render.py", "trajectory.py"], loose
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    assert {"_internal", "store", "recording", "replay", "envloop", "search", "reward", "policies", "learn", "export", "cli",
            "view", "testing"} <= packages
    assert (root / "search" / "optimizers" / "mcts.py").exists()


def test_library_code_never_imports_the_test_kit() -> None:
    import pathlib
    import re

    top = pathlib.Path(tg.__file__).parent.parent
    offenders = []
    for folder in ("trajgraph", "graphs", "adapters"):
        for path in (top / folder).rglob("*.py"):
            if "testing" in path.relative_to(top).parts:
                continue
            if re.search(r"^\s*(from|import) trajgraph\.testing", path.read_text(), re.M):
                offenders.append(str(path.relative_to(top)))
    assert offenders == []


def test_a_reward_model_without_a_folder_says_how_to_get_one() -> None:
    import pytest

    with pytest.raises(tg.ConfigError, match="trajgraph reward train"):
        tg.LocalRewardModel()


def test_import_and_a_reading_command_load_no_heavy_library(tmp_path: Path) -> None:
    """Issue 12.5 / 17: `import trajgraph`, `trajgraph runs` and `show` start without LangGraph, torch, sqlite-utils or
    pandas; only `runs --search` loads sqlite-utils (which loads pandas where it is installed)."""
    db = tmp_path / "runs.db"
    tg.Store(db).write(runs=[tg.Run(id="r-1", graph="g", status="succeeded", error="ValueError: a purple cow")])
    heavy = ("langgraph", "langchain_core", "torch", "transformers", "litellm", "sqlite_utils", "pandas")
    code = ("import sys, trajgraph as tg\n"
            "from trajgraph.cli import app\n"
            "from typer.testing import CliRunner\n"
            "for args in sys.argv[2:]:\n"
            "    assert 'r-1' in CliRunner().invoke(app, [*args.split(), '--db', sys.argv[1]]).output, args\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n")
    for commands, loaded in ((["runs", "runs --status succeeded", "show r-1"], "[]"), (["runs --search purple"], "['sqlite_utils']")):
        out = subprocess.run([sys.executable, "-c", code, str(db), *commands], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().replace("'pandas', ", "") == loaded, (commands, out.stdout)
    # and the names still resolve to what they were (a function, even after its package loads)
    code = "import trajgraph.search.optimize, trajgraph.replay, trajgraph as tg, inspect; print(inspect.isfunction(tg.search) and inspect.isfunction(tg.replay))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip() == "True"
