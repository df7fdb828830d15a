"""trajgraph._internal.langgraph: the LangGraph internals trajgraph relies on, pinned down.

CI runs this file (with the record, search and replay suites) against the oldest
LangGraph the project supports as well as the installed newest (.ci/run).
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel

from trajgraph._internal.langgraph import (
    RESUMING_KEY,
    ainvoke_node,
    compiled_fields,
    node_runnables,
    node_subgraphs,
    retype,
    with_node_runnables,
)


class S(TypedDict, total=False):
    x: int
    log: Annotated[list[str], operator.add]


def _graph() -> Any:
    g = StateGraph(S)
    g.add_node("a", lambda s: {"x": s["x"] + 1, "log": ["a"]})
    g.add_node("b", lambda s: {"x": s["x"] * 10, "log": ["b"]})
    g.add_edge(START, "a")
    g.add_conditional_edges("a", lambda s: "b" if s["x"] < 5 else END, ["b", END])
    g.add_edge("b", END)
    return g.compile()


def test_node_runnables_are_the_user_functions() -> None:
    graph = _graph()
    runs = node_runnables(graph)
    assert {"a", "b"} <= set(runs)
    assert runs["a"].invoke({"x": 1}) == {"x": 2, "log": ["a"]}


def test_swapped_nodes_keep_edges_and_routing() -> None:
    graph = _graph()
    seen: list[str] = []
    orig = node_runnables(graph)

    def spy(name: str) -> Any:
        def run(s: Any) -> Any:
            seen.append(name)
            return orig[name].invoke(s)

        return RunnableLambda(run)

    swapped = with_node_runnables(graph, {n: (spy(n), node_subgraphs(graph, n)) for n in ("a", "b")})
    assert swapped.invoke({"x": 1}) == {"x": 20, "log": ["a", "b"]}
    assert seen == ["a", "b"]
    assert swapped.invoke({"x": 7}) == {"x": 8, "log": ["a"]}  # the conditional edge still routes
    assert graph.invoke({"x": 1}) == {"x": 20, "log": ["a", "b"]} and seen == ["a", "b", "a"]  # the original is untouched


def test_subgraph_nodes_are_reported() -> None:
    inner = _graph()
    outer = StateGraph(S)
    outer.add_node("inner", inner)
    outer.add_edge(START, "inner")
    compiled = outer.compile()
    assert isinstance(node_runnables(compiled)["inner"], Pregel)
    assert node_subgraphs(compiled, "inner") == [inner]


def test_retype_and_fields_rebuild_the_same_graph() -> None:
    graph = _graph()

    class Tagged(type(graph)):  # type: ignore[misc]
        pass

    obj = retype(graph, Tagged, marker=7)
    assert isinstance(obj, Tagged) and obj.marker == 7
    assert obj.invoke({"x": 1}) == graph.invoke({"x": 1})
    rebuilt = type(graph)(**{k: v for k, v in compiled_fields(obj).items() if k != "marker"})
    assert rebuilt.invoke({"x": 3}) == {"x": 40, "log": ["a", "b"]}


class P(BaseModel):
    x: int


class Ctx(TypedDict):
    k: int


def test_ainvoke_node_reads_channels_mapper_and_runtime() -> None:
    got: dict[str, Any] = {}

    def node(state: P, runtime: Runtime[Ctx]) -> dict[str, Any]:
        got["state"], got["context"] = state, runtime.context
        return {"x": state.x + 100}

    g = StateGraph(P, context_schema=Ctx)
    g.add_node("n", node)
    g.add_edge(START, "n")
    graph = g.compile()
    out = asyncio.run(ainvoke_node(graph, "n", {"x": 5}, {"configurable": {}}, context={"k": 1}))
    assert out == {"x": 105}
    assert isinstance(got["state"], P) and got["state"].x == 5  # the pydantic mapper ran
    assert got["context"] == {"k": 1}


def test_resuming_key_is_what_langgraph_sets_in_a_resumed_subgraph() -> None:
    seen: list[bool] = []

    def ask(state: S, config: RunnableConfig) -> dict[str, Any]:
        seen.append(bool(config["configurable"].get(RESUMING_KEY)))
        interrupt("continue?")
        return {"x": state["x"] + 1}

    inner = StateGraph(S)
    inner.add_node("ask", ask)
    inner.add_edge(START, "ask")
    outer = StateGraph(S)
    outer.add_node("inner", inner.compile())
    outer.add_edge(START, "inner")
    graph = outer.compile(checkpointer=InMemorySaver())
    cfg: Any = {"configurable": {"thread_id": "t"}}
    graph.invoke({"x": 1}, cfg)
    from langgraph.types import Command

    assert graph.invoke(Command(resume="yes"), cfg)["x"] == 2
    assert seen == [False, True]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__]))
