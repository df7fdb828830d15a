"""Shared fixtures: a fresh store file per test and a scripted ReAct agent."""

from __future__ import annotations

import multiprocessing
import pickle
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._services import postgres, ray_local  # noqa: F401  (session services: a throwaway PostgreSQL, one local Ray)
from trajgraph.store import Store
from trajgraph.testing import ScriptedToolModel, fake_tool_call
from trajgraph.trajectory import Run, Step


@pytest.fixture(autouse=True)
def no_child_process_outlives_its_test() -> Any:
    """A child left running (a failed join) would make the interpreter wait for it forever at exit."""
    yield
    leftovers = multiprocessing.active_children()
    for child in leftovers:
        child.kill()
        child.join(5)
    assert not leftovers, f"child processes outlived the test: {leftovers}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path).setup()
    yield s
    s.close()


def _calculator_script(tool_calls: int = 2) -> list[Any]:
    calls = [[fake_tool_call("add" if i % 2 == 0 else "multiply", a=i, b=i + 1)] for i in range(tool_calls)]
    return [*calls, "the answer is 42"]


@pytest.fixture
def calculator_script() -> Any:
    """`calculator_script(n)`: n add/multiply tool calls, then an answer (a 2n+1-step ReAct run)."""
    return _calculator_script


@pytest.fixture
def scripted_model() -> ScriptedToolModel:
    """A ScriptedToolModel for react_calculator_agent: two tool calls, then an answer."""
    return ScriptedToolModel(script=_calculator_script(2))


class Touch:
    """Unpickling this creates a file: the proof that a payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def pickled_store(tmp_path: Path) -> tuple[Path, str, Path]:
    """(path, run id, marker): a store whose run output and step update hold pickles (BLOB and text).
    Unpickling any of them creates `marker`."""
    path, marker = tmp_path / "evil.db", tmp_path / "PWNED"
    payload = pickle.dumps(Touch(marker))
    with Store(path) as s:
        s.write(runs=[Run(id="evil", graph="g", graph_path="trajgraph.testing.tiny_env:deceptive_chain_graph")])
        s.write(steps=[Step(run_id="evil", seq=0, node="policy", update={"action": "left"}, action={"action": "left"})])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET output = ? WHERE id = 'evil'", (payload,))
    conn.execute("""UPDATE steps SET "update" = ?, action = ? WHERE run_id = 'evil'""", (payload, payload.decode("latin-1")))
    conn.commit()
    conn.close()
    return path, "evil", marker
