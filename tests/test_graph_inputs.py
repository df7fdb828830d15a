"""Issue 21 item 9: hostile inputs to the shipped graphs get one InputError, checked with the types the graph declares."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypedDict

import pytest

from trajgraph.errors import InputError
from trajgraph.graphs._inputs import conforms

ENV_HOSTILE: list[Any] = [
    {"pos": True}, {"pos": 0, "actions": 5}, {"pos": 0, "actions": [1, 2]}, {"pos": 0, "history": "x"},
    {"pos": 0, "score": "x"}, {"pos": 0, "task": 5}, {"pos": 0, "observation": ["x"]}, {"pos": 0, "done": "yes"},
    {"pos": 0, "reward": "x"}, {"pos": 0, "action": 5}, {"pos": 0, "score": True}, {"pos": 2**70}, {"pos": -1},
    {"pos": 1.5}, {"pos": "0"}, [], "x", {"pos": 0, "extra": 1},
]
SQL_HOSTILE: list[Any] = [
    {"messages": [5]}, {"messages": [{"role": 1, "content": "x"}]}, {"messages": [{"content": "x"}]}, {"messages": [["user"]]},
    {"messages": [{"role": "user", "content": 5}]}, {"messages": "x", "remaining_steps": True}, {"messages": [None]},
    {"messages": [{"role": "alien", "content": "hi"}]}, {"messages": []}, {"messages": 5}, {},
]


@pytest.fixture(scope="module")
def env_graphs() -> list[Any]:
    from trajgraph.graphs.env_loop import cliffwalking_graph, frozenlake_graph

    return [frozenlake_graph(), cliffwalking_graph()]


@pytest.mark.parametrize("bad", ENV_HOSTILE, ids=repr)
def test_env_graphs_refuse_hostile_input(env_graphs: list[Any], bad: Any) -> None:
    for graph in env_graphs:
        with pytest.raises(InputError) as err:
            graph.invoke(bad, {"recursion_limit": 50})
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", SQL_HOSTILE, ids=repr)
def test_sql_graph_refuses_hostile_input(bad: Any) -> None:
    from trajgraph.graphs.sql_react import graph

    with pytest.raises(InputError) as err:
        graph.invoke(bad)
    assert "\n" not in str(err.value) and str(err.value).startswith("sql_react: ")


def test_good_input_still_runs(env_graphs: list[Any]) -> None:
    from trajgraph.adapters.gym_toytext import cliffwalking_task

    final = env_graphs[1].invoke(cliffwalking_task().input, {"recursion_limit": 200})
    assert final["done"] and final["reward"] is not None


class _S(TypedDict, total=False):
    n: int


def test_conforms_reads_declared_types() -> None:
    assert not conforms(True, int) and conforms(1, float) and not conforms(True, float) and conforms(True, bool)
    assert conforms(None, float | None) and not conforms("x", float | None)
    assert conforms(["a"], list[str]) and not conforms(["a", 1], list[str]) and conforms([1, "a"], Annotated[list, "add"])
    assert conforms({"n": 1}, _S) and not conforms({"n": "1"}, _S) and not conforms({"m": 1}, _S)
    assert conforms("a", Literal["a", "b"]) and not conforms("c", Literal["a", "b"]) and not conforms(True, Literal[1])
    assert conforms({"a": 1.5}, dict[str, float]) and not conforms({"a": math.inf, 1: 2}, dict[str, float])
