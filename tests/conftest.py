"""Shared fixtures: a fresh store file per test and a scripted ReAct agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trajgraph.store import Store
from trajgraph.testing import ScriptedToolModel, fake_tool_call


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db_path: Path) -> Store:
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
