"""Graphs that a node's own function invokes: their steps join the recorded run."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

import trajgraph as tg
from trajgraph.errors import ReplayError
from trajgraph.recording.nested import nested_graph_nodes
from trajgraph.store import Store
from trajgraph.store.json import canonical
from trajgraph.testing import ScriptedToolModel, react_calculator_agent
from trajgraph.testing.tiny_env import deceptive_chain_graph


class Outer(TypedDict):
    x: int
    answer: str


class Inner(TypedDict):
    y: int


def _arithmetic(fail_at: int | None = None, factor: int = 2) -> Any:
    """An inner graph (double, then inc) that a node calls; `fail_at` makes inc raise on that value."""

    def inc(s: Inner) -> dict[str, int]:
        if s["y"] == fail_at:
            raise ValueError(f"inc refused {fail_at}")
        return {"y": s["y"] + 1}

    b = StateGraph(Inner)
    b.add_node("double", lambda s: {"y": s["y"] * factor})
    b.add_node("inc", inc)  # type: ignore[arg-type]  # LangGraph's node protocols name the argument `state`; it passes it positionally
    b.add_edge(START, "double")
    b.add_edge("double", "inc")
    b.add_edge("inc", END)
    return b.compile()


def _outer(inner: Any, agent: Any = None) -> Any:
    """first -> call_inner (invokes `inner` from its function) [-> ask (invokes a ReAct agent)]."""

    def call_inner(s: Outer) -> dict[str, int]:
        return {"x": inner.invoke({"y": s["x"]})["y"]}

    def ask(s: Outer) -> dict[str, str]:
        out = agent.invoke({"messages": [HumanMessage(content=f"what is {s['x']}?")]})
        return {"answer": str(out["messages"][-1].content)}

    b = StateGraph(Outer)
    b.add_node("first", lambda s: {"x": s["x"] + 1})
    b.add_node("call_inner", call_inner)  # type: ignore[arg-type]  # LangGraph's node protocols name the argument `state`; it passes it positionally
    b.add_edge(START, "first")
    b.add_edge("first", "call_inner")
    if agent is None:
        b.add_edge("call_inner", END)
    else:
        b.add_node("ask", ask)  # type: ignore[arg-type]  # LangGraph's node protocols name the argument `state`; it passes it positionally
        b.add_edge("call_inner", "ask")
        b.add_edge("ask", END)
    return b.compile()


def test_steps_of_a_graph_called_inside_a_node_are_recorded_under_it(store: Store) -> None:
    graph = tg.record(_outer(_arithmetic()), store=store, name="outer")
    assert graph.invoke({"x": 1})["x"] == 5  # (1 + 1) * 2 + 1
    (run,) = store.runs()
    steps = store.steps(run.id)
    assert [(s.seq, s.node) for s in steps] == [(0, "first"), (1, "call_inner"), (2, "double"), (3, "inc")]
    call = steps[1]
    assert call.namespace == "" and call.update == {"x": 5}
    for inner in steps[2:]:  # each names the calling step's task: the same parent link as a subgraph node's steps
        assert inner.namespace == f"call_inner:{call.task_id}" and inner.task_id
    assert [s.update for s in steps[2:]] == [{"y": 4}, {"y": 5}]
    assert [s.lg_step for s in steps[2:]] == [1, 2]
    assert call.latency_ms >= steps[2].latency_ms + steps[3].latency_ms


def test_a_second_run_and_async_runs_record_the_nested_steps_again(store: Store) -> None:
    import asyncio

    graph = tg.record(_outer(_arithmetic()), store=store, name="outer")
    graph.invoke({"x": 1})
    asyncio.run(graph.ainvoke({"x": 2}))
    runs = store.runs()
    assert len(runs) == 2
    for run in runs:
        assert [s.node for s in store.steps(run.id)] == ["first", "call_inner", "double", "inc"]


def test_an_error_inside_the_called_graph_is_kept_on_both_steps(store: Store) -> None:
    graph = tg.record(_outer(_arithmetic(fail_at=4)), store=store, name="outer")
    with pytest.raises(ValueError, match="inc refused 4"):
        graph.invoke({"x": 1})
    (run,) = store.runs()
    assert run.status == "failed"
    steps = {s.node: s for s in store.steps(run.id)}
    assert steps["double"].update == {"y": 4} and steps["double"].error is None
    assert steps["inc"].error == "ValueError: inc refused 4"
    assert steps["call_inner"].error == "ValueError: inc refused 4"


def test_only_graphs_with_such_nodes_pay_for_chain_callbacks() -> None:
    assert nested_graph_nodes(_outer(_arithmetic())) == {"call_inner"}
    assert nested_graph_nodes(deceptive_chain_graph(depth=2)) == frozenset()
    assert nested_graph_nodes(react_calculator_agent(ScriptedToolModel(script=["hi"]))) == frozenset()


def test_a_react_agent_called_inside_a_node_replays_from_the_cassette(store: Store, calculator_script) -> None:
    model = ScriptedToolModel(script=calculator_script(2))
    graph = _outer(_arithmetic(), agent=react_calculator_agent(model))
    tg.record(graph, store=store, name="outer").invoke({"x": 1})
    (run,) = store.runs()
    steps = store.steps(run.id)
    ask = next(s for s in steps if s.node == "ask")
    inside_ask = [s.node for s in steps if s.namespace == f"ask:{ask.task_id}"]
    assert inside_ask == ["agent", "tools", "agent", "tools", "agent"]
    calls = store.model_calls(run.id)
    agent_steps = [s.seq for s in steps if s.node == "agent"]
    assert [c.step_seq for c in calls] == agent_steps  # each call belongs to the nested agent step it ran in

    made = model.calls
    result = tg.replay(store, run.id, graph)
    assert model.calls == made  # ask answered from the record: no model call
    assert result.matched, result.divergence
    new_steps = store.steps(result.run_id)
    # ask did not run, so neither did the agent inside it; call_inner ran live, nested steps and all
    assert [s.node for s in new_steps] == ["first", "call_inner", "double", "inc", "ask"]
    assert canonical(store.run(result.run_id).output) == canonical(run.output)


def test_a_live_replay_matches_the_nested_steps_one_by_one(store: Store) -> None:
    graph = _outer(_arithmetic())
    tg.record(graph, store=store, name="outer").invoke({"x": 3})
    (run,) = store.runs()
    result = tg.replay(store, run.id, graph, live=True)
    assert result.matched and result.steps == 4


def test_a_changed_called_graph_is_a_divergence_at_its_step(store: Store) -> None:
    tg.record(_outer(_arithmetic()), store=store, name="outer").invoke({"x": 1})
    (run,) = store.runs()

    result = tg.replay(store, run.id, _outer(_arithmetic(factor=3)), live=True)
    assert not result.matched
    assert result.divergence is not None
    assert (result.divergence.seq, result.divergence.node, result.divergence.reason) == (1, "call_inner", "update differs")


def test_an_action_cannot_be_substituted_inside_a_called_graph(store: Store) -> None:
    graph = _outer(_arithmetic())
    tg.record(graph, store=store, name="outer").invoke({"x": 1})
    (run,) = store.runs()
    with pytest.raises(ReplayError, match=r"step 2 \(double\) ran inside a graph that node 'call_inner' \(step 1\) calls"):
        tg.replay(store, run.id, graph, fork_at=2, action={"y": 100})
    forked = tg.replay(store, run.id, graph, fork_at=1, action={"x": 100})  # at the calling node it can
    assert forked.output["x"] == 100
