"""trajgraph/replay/: cassette replay with no model call, forks at step N, diffs."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import create_react_agent
from langgraph.types import Command, Send, interrupt

import trajgraph as tg
from trajgraph.errors import ReplayError, RunNotFoundError
from trajgraph.replay import diff, fork, load_graph, replay
from trajgraph.store import Store
from trajgraph.store.json import canonical
from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent
from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph, env_loop_graph

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _record_react(store: Store, model: ScriptedToolModel, **kw: Any) -> str:
    agent = tg.record(react_calculator_agent(model), store=store, **kw)
    agent.invoke({"messages": [("user", "compute")]})
    return store.runs()[0].id


def test_cassette_replay_reproduces_react_run_without_calling_the_model(store: Store, calculator_script) -> None:
    model = ScriptedToolModel(script=calculator_script(4))
    run_id = _record_react(store, model)
    calls_after_recording = model.calls
    assert calls_after_recording == 5

    result = replay(store, run_id, react_calculator_agent(model))  # the very model object: any call would count
    assert model.calls == calls_after_recording
    assert result.matched and result.divergence is None and result.status == "succeeded"
    assert result.steps == 9 and result.answered == 5  # five agent steps answered, four tool steps re-run
    new = store.run(result.run_id)
    assert (new.kind, new.parent_id, new.status) == ("replay", run_id, "succeeded")
    assert new.metadata["replay"]["matched"] is True
    old_steps, new_steps = store.steps(run_id), store.steps(result.run_id)
    assert [(s.node, s.lg_step, s.path) for s in new_steps] == [(s.node, s.lg_step, s.path) for s in old_steps]
    assert [canonical(s.update) for s in new_steps] == [canonical(s.update) for s in old_steps]
    assert canonical(new.output) == canonical(store.run(run_id).output)
    assert store.model_calls(result.run_id) == []
    assert diff(store, run_id, result.run_id).identical


def _react_with(add_impl) -> Any:
    @tool
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return add_impl(a, b)

    @tool
    def multiply(a: float, b: float) -> float:
        """Multiply two numbers."""
        return a * b

    return lambda model: create_react_agent(model, [add, multiply], name="calculator")


def test_replay_reports_first_divergence_of_a_changed_tool(store: Store, calculator_script) -> None:
    model = ScriptedToolModel(script=calculator_script(4))
    run_id = _record_react(store, model)
    calls = model.calls
    result = replay(store, run_id, _react_with(lambda a, b: a + b + 100)(model))
    assert model.calls == calls
    assert not result.matched and result.status == "succeeded"
    d = result.divergence
    assert d is not None
    assert (d.seq, d.node, d.reason) == (1, "tools", "update differs")
    assert d.expected["messages"][0]["__lc_message__"]["content"] == "1.0"
    assert d.got["messages"][0]["__lc_message__"]["content"] == "101.0"
    rows = diff(store, run_id, result.run_id)
    assert rows.first_difference is not None
    assert rows.counts()["changed"] == 2 and rows.first_difference.a_seq == 1  # both add calls changed


class Counter(TypedDict, total=False):
    n: int
    notes: Annotated[list, operator.add]


def _summarizing_graph(model: ScriptedToolModel, summarize: bool) -> Any:
    """prep -> agent; `summarize=True` makes prep call the model too (a new model call)."""

    def prep(state: Counter) -> dict:
        if summarize:
            model.invoke("summarize")
        return {"notes": ["prepped"]}

    def agent(state: Counter) -> dict:
        return {"notes": [model.invoke("act").content]}

    g = StateGraph(Counter)
    g.add_node("prep", prep)
    g.add_node("agent", agent)
    g.add_edge(START, "prep")
    g.add_edge("prep", "agent")
    return g.compile()


def test_cassette_replay_refuses_a_model_call_it_has_no_answer_for(store: Store) -> None:
    model = ScriptedToolModel(script=["acted"])
    graph = tg.record(_summarizing_graph(model, summarize=False), store=store)
    graph.invoke({"n": 0})
    run_id = store.runs()[0].id
    assert model.calls == 1
    result = replay(store, run_id, _summarizing_graph(model, summarize=True))
    assert model.calls == 1  # the new call in prep was stopped before it reached the model
    assert result.error is not None
    assert not result.matched and result.status == "failed" and "calls no model" in result.error
    assert result.divergence is not None
    assert (result.divergence.seq, result.divergence.node, result.divergence.reason) == (0, "prep", "error differs")

    live = replay(store, run_id, _summarizing_graph(model, summarize=False), live=True)
    assert model.calls == 2 and live.answered == 0 and live.matched  # live: the agent really ran, and agreed


def test_live_replay_of_a_deterministic_agent_matches(store: Store, calculator_script) -> None:
    model = ScriptedToolModel(script=calculator_script(2))
    run_id = _record_react(store, model)
    fresh = ScriptedToolModel(script=calculator_script(2))
    result = replay(store, run_id, react_calculator_agent(fresh), live=True)
    assert result.matched and result.answered == 0 and fresh.calls == 3


def test_fork_at_step_n_with_a_substituted_action(store: Store, calculator_script) -> None:
    model = ScriptedToolModel(script=calculator_script(2))
    run_id = _record_react(store, model)
    forker = ScriptedToolModel(script=["forked answer"])
    action = {"messages": [AIMessage(content="", tool_calls=[fake_tool_call("add", a=10, b=20)])]}
    result = fork(store, run_id, react_calculator_agent(forker), at=2, action=action, tags=["mine"])
    assert result.kind == "fork" and result.fork_step == 2 and result.status == "succeeded"
    assert store.run(result.run_id).tags == ("mine",)
    assert forker.calls == 1  # steps 0-1 came from the record, step 2 was substituted, step 4 ran live
    child = store.run(result.run_id)
    assert (child.kind, child.parent_id, child.fork_step) == ("fork", run_id, 2)
    assert [r.id for r in store.runs(parent_id=run_id)] == [result.run_id]
    old, new = store.steps(run_id), store.steps(result.run_id)
    assert [canonical(s.update) for s in new[:2]] == [canonical(s.update) for s in old[:2]]
    assert new[2].action["messages"][0].tool_calls[0]["args"] == {"a": 10, "b": 20}
    assert new[3].update["messages"][0].content == "30.0"  # the tool really ran on the new action
    assert new[4].update["messages"][0].content == "forked answer"
    assert result.divergence is not None
    assert (result.divergence.seq, result.divergence.node) == (2, "agent")
    d = diff(store, run_id, result.run_id)
    assert [s.status for s in d.steps] == ["same", "same", "changed", "changed", "changed"] and not d.identical


def test_fork_at_step_n_live(store: Store, calculator_script) -> None:
    model = ScriptedToolModel(script=calculator_script(2))
    run_id = _record_react(store, model)
    live_model = ScriptedToolModel(script=["stop here"])
    result = fork(store, run_id, react_calculator_agent(live_model), at=2)
    assert live_model.calls == 1 and result.status == "succeeded"
    new = store.steps(result.run_id)
    assert [s.node for s in new] == ["agent", "tools", "agent"] and new[2].update["messages"][0].content == "stop here"


def test_fork_inside_a_subgraph_runs_the_subgraph_around_it(store: Store) -> None:
    class S(TypedDict):
        xs: Annotated[list, operator.add]

    inner = StateGraph(S)
    inner.add_node("policy", lambda s: {"xs": ["inner-policy"]})
    inner.add_node("act", lambda s: {"xs": [f"acted-on-{s['xs'][-1]}"]})
    inner.add_edge(START, "policy")
    inner.add_edge("policy", "act")
    top = StateGraph(S)
    top.add_node("first", lambda s: {"xs": ["first"]})
    top.add_node("sub", inner.compile())
    top.add_edge(START, "first")
    top.add_edge("first", "sub")
    graph = top.compile()
    tg.record(graph, store=store, decision_nodes=[]).invoke({"xs": []})
    run_id = store.runs()[0].id
    steps = store.steps(run_id)
    assert [s.node for s in steps] == ["first", "sub", "policy", "act"]
    result = replay(store, run_id, graph, fork_at=2, action={"xs": ["swapped"]})
    new = {s.node: s for s in store.steps(result.run_id)}
    assert new["policy"].update == {"xs": ["swapped"]} and new["act"].update == {"xs": ["acted-on-swapped"]}
    assert result.output["xs"][-1] == "acted-on-swapped"


def _fan_out_graph() -> Any:
    class S(TypedDict):
        xs: Annotated[list, operator.add]

    inner = StateGraph(S)
    inner.add_node("leaf", lambda s: {"xs": [f"leaf{len(s['xs'])}"]})
    inner.add_edge(START, "leaf")
    g = StateGraph(S)
    g.add_node("plan", lambda s: {"xs": ["plan"]})
    g.add_node("work", inner.compile())
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", lambda s: [Send("work", {"xs": ["w"] * i}) for i in range(3)], ["work"])
    return g.compile()


def test_replay_of_send_and_subgraph_run_matches_across_fresh_task_ids(store: Store) -> None:
    tg.record(_fan_out_graph(), store=store).invoke({"xs": []})
    run_id = store.runs()[0].id
    result = replay(store, run_id, _fan_out_graph())
    assert result.matched and result.steps == 7  # plan + 3 x (work, leaf)
    leaves = [s for s in store.steps(result.run_id) if s.node == "leaf"]
    assert len({s.namespace for s in leaves}) == 3 and all(s.namespace.startswith("work:") for s in leaves)


def _hitl_graph(checkpointer: bool = True) -> Any:
    class S(TypedDict):
        xs: Annotated[list, operator.add]

    g = StateGraph(S)
    g.add_node("ask", lambda s: {"xs": [interrupt("approve?")]})
    g.add_node("policy", lambda s: {"xs": [f"decided:{s['xs'][-1]}"]})
    g.add_edge(START, "ask")
    g.add_edge("ask", "policy")
    return g.compile(checkpointer=InMemorySaver() if checkpointer else None)


def test_replay_of_an_interrupted_and_resumed_run_resumes_the_same_way(store: Store) -> None:
    graph = tg.record(_hitl_graph(), store=store)
    config: RunnableConfig = {"configurable": {"thread_id": "x"}}
    graph.invoke({"xs": []}, config)
    graph.invoke(Command(resume="yes"), config)
    run_id = store.runs()[0].id
    result = replay(store, run_id, _hitl_graph())
    assert result.matched and result.status == "succeeded" and result.output == {"xs": ["yes", "decided:yes"]}
    assert [s.interrupted for s in store.steps(result.run_id)] == [True, False, False]


def test_replay_of_a_failed_run_fails_the_same_way(store: Store) -> None:
    def explode(state: dict) -> dict:
        raise RuntimeError("env crashed")

    broken = env_loop_graph(explode, lambda state: {"action": "left"}).compile()
    with pytest.raises(RuntimeError):
        tg.record(broken, store=store).invoke(chain_start())
    run_id = store.runs()[0].id
    result = replay(store, run_id, broken)
    assert result.error is not None
    assert result.status == "failed" and "env crashed" in result.error and result.matched


def test_replay_of_a_failed_then_retried_run(store: Store) -> None:
    class S(TypedDict):
        xs: Annotated[list, operator.add]

    def build(fail_first: list[int]) -> Any:
        def flaky(state: S) -> dict:
            fail_first.append(1)
            if len(fail_first) == 1:
                raise TimeoutError("upstream timed out")
            return {"xs": ["ok"]}

        g = StateGraph(S)
        g.add_node("flaky", flaky)
        g.add_edge(START, "flaky")
        return g.compile(checkpointer=InMemorySaver())

    graph = tg.record(build([]), store=store)
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    with pytest.raises(TimeoutError):
        graph.invoke({"xs": []}, config)
    graph.invoke(None, config)
    run_id = store.runs()[0].id
    result = replay(store, run_id, build([]))  # fails once, then the recorded retry resumes it
    assert result.matched and result.status == "succeeded" and result.output == {"xs": ["ok"]}


def test_replay_never_imports_the_graph_a_store_names(store: Store, tmp_path, monkeypatch) -> None:
    """A received store naming a payload (or os:abort) runs nothing: the graph comes from the caller."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    marker = tmp_path / "PWNED"
    payload = elsewhere / "payload.py"
    payload.write_text(f"open({str(marker)!r}, 'w').close()\ngraph = None\n")
    monkeypatch.chdir(project)
    graph = deceptive_chain_graph()
    for named in (f"{payload}:graph", "os:abort", "trajgraph.testing.tiny_env:deceptive_chain_graph"):
        tg.record(graph, store=store, graph_path=named).invoke(chain_start())
        run_id = store.runs()[0].id
        with pytest.raises(ReplayError, match="never imports the code a store names") as info:
            replay(store, run_id)
        assert named in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(ReplayError, match=r"refusing to import .* only a module inside"):
            replay(store, run_id, import_recorded=named)  # named by the user, but outside the project
        with pytest.raises(ReplayError, match="is not the graph_path"):
            replay(store, run_id, import_recorded="other.py:graph")
    assert not marker.exists() and not store.runs(kind="replay")
    assert replay(store, run_id, graph).matched  # the caller's graph: fine


def test_replay_imports_the_recorded_graph_inside_the_project_when_named(store: Store, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mygraph.py").write_text("from trajgraph.testing.tiny_env import deceptive_chain_graph\ngraph = deceptive_chain_graph()\n")
    tg.record(load_graph("mygraph.py:graph"), store=store, graph_path="mygraph.py:graph").invoke(chain_start())
    run_id = store.runs()[0].id
    result = replay(store, run_id, import_recorded="mygraph.py:graph")
    assert result.matched and store.run(result.run_id).graph_path == "mygraph.py:graph"
    assert replay(store, run_id, "mygraph.py:graph").matched  # a spec string the caller gives
    module = f"tg_graph_{uuid.uuid4().hex}"  # a module name, not loaded yet (unique: a rerun must not find the last one)
    (tmp_path / f"{module}.py").write_text((tmp_path / "mygraph.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    tg.record(load_graph("mygraph.py:graph"), store=store, graph_path=f"{module}:graph").invoke(chain_start())
    named = next(r.id for r in store.runs() if r.graph_path == f"{module}:graph")
    assert replay(store, named, import_recorded=f"{module}:graph").matched


def test_replay_argument_errors(store: Store, tmp_path) -> None:
    tg.record(deceptive_chain_graph(), store=store).invoke(chain_start())
    run_id = store.runs()[0].id
    graph = deceptive_chain_graph()
    with pytest.raises(ReplayError, match="cannot fork at step 99"):
        replay(store, run_id, graph, fork_at=99)
    with pytest.raises(ReplayError, match="give fork_at"):
        replay(store, run_id, graph, action={"action": "left"})
    with pytest.raises(ReplayError, match="needs its graph: pass graph="):
        replay(store, run_id)
    with pytest.raises(ReplayError, match="not both"):
        replay(store, run_id, graph, import_recorded="x.py:graph")
    with pytest.raises(RunNotFoundError):
        replay(store, "no-such-run", graph)
    with pytest.raises(ReplayError, match="module:attr"):
        load_graph("just_a_name")
    with pytest.raises(ReplayError, match="cannot import"):
        load_graph("no_such_module_xyz:graph")
    with pytest.raises(ReplayError, match="no attribute"):
        load_graph("trajgraph.testing.tiny_env:nope")
    with pytest.raises(ReplayError, match="failed"):
        load_graph("trajgraph.testing:react_calculator_agent")  # needs a model argument
    script = tmp_path / "mygraph.py"
    script.write_text("from trajgraph.testing.tiny_env import deceptive_chain_graph\ngraph = deceptive_chain_graph()\n")
    assert load_graph(f"{script}:graph").get_name() == "deceptive_chain"
    assert len(store.runs()) == 1  # refused replays created no run


def test_a_different_final_output_is_a_divergence_even_when_every_step_matches(store: Store, db_path) -> None:
    import sqlite3

    tg.record(deceptive_chain_graph(depth=2), store=store).invoke(chain_start())
    run_id = store.runs()[0].id
    assert replay(store, run_id, deceptive_chain_graph(depth=2)).matched
    conn = sqlite3.connect(db_path)  # the recording says the run ended elsewhere
    conn.execute("UPDATE runs SET output = json_set(output, '$.score', 99) WHERE id = ?", (run_id,))
    conn.commit()
    conn.close()
    result = replay(store, run_id, deceptive_chain_graph(depth=2))
    assert not result.matched and result.divergence is not None
    assert result.divergence.seq is None and result.divergence.reason == "output differs"
    assert result.divergence.expected["score"] == 99 and result.divergence.got["score"] != 99
    assert store.run(result.run_id).metadata["replay"]["divergence"]["reason"] == "output differs"


def test_a_failed_recorded_decision_step_is_run_again_not_answered(store: Store) -> None:
    """The cassette answers only usable steps: a decision step that raised has no answer to give."""

    class S(TypedDict):
        xs: Annotated[list, operator.add]

    def build(attempts: list[int]) -> Any:
        def decide(state: S) -> dict:
            attempts.append(1)
            if len(attempts) == 1:
                raise TimeoutError("provider timed out")
            return {"xs": ["chosen"]}

        g = StateGraph(S)
        g.add_node("decide", decide)
        g.add_edge(START, "decide")
        return g.compile(checkpointer=InMemorySaver())

    graph = tg.record(build([]), store=store, decision_nodes=["decide"])
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    with pytest.raises(TimeoutError):
        graph.invoke({"xs": []}, config)
    graph.invoke(None, config)
    run_id = store.runs()[0].id
    attempts: list[int] = []
    result = replay(store, run_id, build(attempts))
    assert len(attempts) == 1  # the failed step ran again (and failed again); the retry was answered
    assert result.matched and result.answered == 1 and result.output == {"xs": ["chosen"]}


def test_replay_gives_a_graph_without_a_checkpointer_one_to_apply_recorded_resumes(store: Store) -> None:
    graph = tg.record(_hitl_graph(checkpointer=False), store=store, checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "x"}}
    graph.invoke({"xs": []}, config)
    graph.invoke(Command(resume="yes"), config)
    run_id = store.runs()[0].id
    result = replay(str(store.path), run_id, _hitl_graph(checkpointer=False))  # a store given by path, too
    assert result.matched and result.status == "succeeded" and result.output == {"xs": ["yes", "decided:yes"]}
    assert [s.interrupted for s in store.steps(result.run_id)] == [True, False, False]


def test_replay_of_a_run_left_at_an_interrupt_ends_interrupted_without_the_marker(store: Store) -> None:
    tg.record(_hitl_graph(), store=store).invoke({"xs": []}, {"configurable": {"thread_id": "y"}})
    (run,) = store.runs()
    assert run.status == "interrupted"
    result = replay(store, run.id, _hitl_graph())
    assert result.status == "interrupted" and result.output == {"xs": []} and result.matched


def test_a_decision_step_with_no_recorded_answer_is_a_divergence(store: Store) -> None:
    tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store).invoke(chain_start())
    run_id = store.runs()[0].id
    result = replay(store, run_id, deceptive_chain_graph(depth=3, skill=1.0, trap=0.0))  # one more decision to make
    assert not result.matched and result.status == "failed"
    assert result.error is not None
    assert "has no recorded answer" in result.error and "live=True" in result.error
    assert replay(store, run_id, deceptive_chain_graph(depth=3, skill=1.0, trap=0.0), live=True).status == "succeeded"
