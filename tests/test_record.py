"""trajgraph/recording/record.py on real LangGraph graphs: what lands in the store, and that the graph still behaves."""

from __future__ import annotations

import asyncio
import contextvars
import json
import multiprocessing
import operator
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, Send, interrupt

import trajgraph as tg
from trajgraph.recording.record import step_keys
from trajgraph.store import Store
from trajgraph.testing import ScriptedToolModel, react_calculator_agent
from trajgraph.testing.tiny_env import EnvState, calculator_tools, chain_start, deceptive_chain_graph


class S(TypedDict):
    xs: Annotated[list, operator.add]


def _node(value: Any):
    return lambda state: {"xs": [value]}


def test_react_agent_steps_actions_and_model_calls(store: Store, scripted_model: ScriptedToolModel) -> None:
    agent = tg.record(react_calculator_agent(scripted_model), store=store, tags=["t1"], metadata={"who": "test"})
    out = agent.invoke({"messages": [("user", "compute")]})
    assert out["messages"][-1].content == "the answer is 42"
    (run,) = store.runs()  # on disk as soon as invoke returns
    assert (run.graph, run.kind, run.status, run.tags, run.metadata) == ("calculator", "record", "succeeded", ("t1",), {"who": "test"})
    assert run.ended_at is not None and run.input == {"messages": [["user", "compute"]]}
    assert [m.content for m in run.output["messages"]] == [m.content for m in out["messages"]]
    steps = store.steps(run.id)
    assert [s.node for s in steps] == ["agent", "tools", "agent", "tools", "agent"]
    assert [s.lg_step for s in steps] == [1, 2, 3, 4, 5]
    assert all(s.action is not None for s in steps if s.node == "agent")
    assert all(s.action is None for s in steps if s.node == "tools")
    assert steps[0].action["messages"][0].tool_calls[0]["name"] == "add"
    assert steps[1].update["messages"][0].content == "1.0"  # add(0, 1)
    # each step keeps its update only, not the growing conversation
    assert all(len(s.update["messages"]) == 1 for s in steps)
    calls = store.model_calls(run.id)
    assert [c.step_seq for c in calls] == [0, 2, 4]
    assert calls[0].model == "scripted-tool-model" and calls[0].prompt_tokens == 1
    assert isinstance(calls[1].messages[-1], type(steps[1].update["messages"][0]))  # the tool answer went in
    assert calls[2].response.content == "the answer is 42"


def test_model_call_prompts_are_stored_once_and_read_back_whole(store: Store, calculator_script) -> None:
    agent = tg.record(react_calculator_agent(ScriptedToolModel(script=calculator_script(3))), store=store)
    agent.invoke({"messages": [("user", "compute")]})
    run_id = store.runs()[0].id
    calls = store.model_calls(run_id)
    assert [len(c.messages) for c in calls] == [1, 3, 5, 7]  # whole prompts, as the model saw them
    assert [(c.prompt_ref, c.prompt_shared) for c in calls] == [(None, 0), (0, 1), (1, 3), (2, 5)]
    raw = sqlite3.connect(store.path).execute("SELECT messages FROM model_calls WHERE run_id = ? ORDER BY seq", (run_id,))
    assert [len(json.loads(m)) for (m,) in raw] == [1, 2, 2, 2]  # on disk: only what each call added


def test_rows_are_readable_at_once_and_on_disk_after_flush(store: Store) -> None:
    graph = tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store)
    graph.invoke(chain_start("a"))
    assert len(store.steps(store.runs()[0].id)) == 4  # read-your-writes through the same Store
    graph.invoke(chain_start("b"))
    store.flush()
    other = Store(store.path, readonly=True)  # another connection sees everything once flushed
    assert sorted(r.input["task"] for r in other.runs()) == ["a", "b"] and other.count("steps") == 8


def _record_in_child(path: str) -> None:
    graph = tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=Store(path), name="child")
    graph.invoke(chain_start("in-child"))


def test_recording_in_a_forked_child_process(store: Store) -> None:
    tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store).invoke(chain_start("parent"))
    store.close()  # SQLite connections must not cross fork (sqlite.org/howtocorrupt.html#fork)
    ctx = multiprocessing.get_context("fork")  # the parent's writer thread does not exist in the child
    child = ctx.Process(target=_record_in_child, args=(str(store.path),), daemon=True)  # never outlives the test
    child.start()
    child.join(60)
    assert child.exitcode == 0
    (run,) = store.runs(graph="child")
    assert run.status == "succeeded" and len(store.steps(run.id)) == 4


def test_langchain_create_agent_decision_node_is_model(store: Store, scripted_model: ScriptedToolModel) -> None:
    from langchain.agents import create_agent
    agent = tg.record(create_agent(scripted_model, calculator_tools()), store=store, name="lc-agent")
    agent.invoke({"messages": [HumanMessage(content="go")]})
    (run,) = store.runs(graph="lc-agent")
    steps = store.steps(run.id)
    decisions = [s for s in steps if s.action is not None]
    assert [s.node for s in decisions] == ["model", "model", "model"]
    assert len(store.model_calls(run.id)) == 3 and run.status == "succeeded"


def test_custom_graph_with_conditional_edges(store: Store) -> None:
    graph = tg.record(deceptive_chain_graph(depth=3, skill=1.0, trap=0.0), store=store, task=lambda inp: inp["task"])
    out = graph.invoke(chain_start("chain-3"))
    (run,) = store.runs(task="chain-3")
    steps = store.steps(run.id)
    assert [s.node for s in steps] == ["policy", "env"] * 3 and out["reward"] == 1.0
    assert [s.action["action"] for s in steps if s.node == "policy"] == [h["action"] for h in out["history"]]
    assert run.output["reward"] == 1.0


def test_subgraph_steps_carry_namespaces(store: Store) -> None:
    inner = StateGraph(S)
    inner.add_node("leaf", _node("leaf"))
    inner.add_edge(START, "leaf")
    mid = StateGraph(S)
    mid.add_node("inner", inner.compile())
    mid.add_node("after", _node("after"))
    mid.add_edge(START, "inner")
    mid.add_edge("inner", "after")
    top = StateGraph(S)
    top.add_node("first", _node("first"))
    top.add_node("sub", mid.compile())
    top.add_edge(START, "first")
    top.add_edge("first", "sub")
    graph = tg.record(top.compile(), store=store, name="nested")
    out = graph.invoke({"xs": []})
    assert out["xs"][-1] == "after"
    steps = {s.node: s for s in store.steps(store.runs()[0].id)}
    assert set(steps) == {"first", "sub", "inner", "leaf", "after"}
    assert steps["first"].namespace == "" and steps["sub"].namespace == ""
    assert steps["inner"].namespace == f"sub:{steps['sub'].task_id}"
    assert steps["after"].namespace == steps["inner"].namespace
    assert steps["leaf"].namespace == f"sub:{steps['sub'].task_id}|inner:{steps['inner'].task_id}"
    keys = dict(zip([s.node for s in store.steps(store.runs()[0].id)], step_keys(store.steps(store.runs()[0].id))))
    assert keys["leaf"][0] == "sub@2|inner@1" and keys["after"][0] == "sub@2"


def test_send_fan_out_steps_carry_task_paths(store: Store) -> None:
    g = StateGraph(S)
    g.add_node("plan", _node("plan"))
    g.add_node("work", lambda state: {"xs": [f"work{state['xs'][0]}"]})
    g.add_node("join", _node("join"))
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", lambda s: [Send("work", {"xs": [i]}) for i in range(3)], ["work"])
    g.add_edge("work", "join")
    graph = tg.record(g.compile(), store=store)
    out = graph.invoke({"xs": []})
    assert sorted(x for x in out["xs"] if str(x).startswith("work")) == ["work0", "work1", "work2"]
    steps = store.steps(store.runs()[0].id)
    work = [s for s in steps if s.node == "work"]
    assert len(work) == 3 and len({s.lg_step for s in work}) == 1
    assert sorted(s.path for s in work) == ["__pregel_push/0", "__pregel_push/1", "__pregel_push/2"]
    assert {s.update["xs"][0] for s in work} == {"work0", "work1", "work2"}
    assert len(set(step_keys(steps))) == len(steps)  # parallel tasks stay distinguishable


def _approval_graph() -> StateGraph:
    g = StateGraph(S)
    g.add_node("draft", _node("draft"))
    g.add_node("ask", lambda state: {"xs": [interrupt("approve?")]})
    g.add_node("send", _node("send"))
    g.add_edge(START, "draft")
    g.add_edge("draft", "ask")
    g.add_edge("ask", "send")
    g.add_edge("send", END)
    return g


def test_interrupt_resumed_later_is_the_same_run(store: Store) -> None:
    graph = tg.record(_approval_graph().compile(), store=store, name="hitl", checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"xs": []}, config)
    assert "__interrupt__" in first
    (run,) = store.runs()
    assert run.status == "interrupted" and run.thread_id == "t1" and run.ended_at is None
    other = graph.invoke({"xs": []}, {"configurable": {"thread_id": "t2"}})  # another thread: another run
    assert "__interrupt__" in other
    out = graph.invoke(Command(resume="yes"), config)
    assert out["xs"] == ["draft", "yes", "send"]
    runs = {r.thread_id: r for r in store.runs()}
    assert len(runs) == 2 and runs["t1"].id == run.id and runs["t2"].status == "interrupted"
    done = store.run(run.id)
    assert done.status == "succeeded" and done.ended_at is not None and done.output == {"xs": ["draft", "yes", "send"]}
    assert done.metadata["resumes"][0].resume == "yes"
    steps = store.steps(run.id)
    assert [(s.seq, s.node, s.interrupted) for s in steps] == [(0, "draft", False), (1, "ask", True), (2, "ask", False), (3, "send", False)]


def test_retrying_a_failed_checkpointed_thread_continues_the_run(store: Store) -> None:
    attempts = []

    def flaky(state: S) -> dict:
        attempts.append(1)
        if len(attempts) == 1:
            raise TimeoutError("upstream timed out")
        return {"xs": ["ok"]}

    g = StateGraph(S)
    g.add_node("a", _node("a"))
    g.add_node("flaky", flaky)
    g.add_edge(START, "a")
    g.add_edge("a", "flaky")
    graph = tg.record(g.compile(checkpointer=InMemorySaver()), store=store)
    config: RunnableConfig = {"configurable": {"thread_id": "retry"}}
    with pytest.raises(TimeoutError):
        graph.invoke({"xs": []}, config)
    assert store.runs()[0].status == "failed"
    assert graph.invoke(None, config)["xs"] == ["a", "ok"]  # LangGraph retries from the checkpoint
    (run,) = store.runs()
    assert run.status == "succeeded" and run.error is None
    assert [(s.node, s.error) for s in store.steps(run.id)] == [("a", None), ("flaky", "TimeoutError: upstream timed out"), ("flaky", None)]
    graph.invoke({"xs": []}, config)  # a new input on the same thread: a new run
    assert len(store.runs()) == 2


def test_interrupt_inside_a_recorded_child_graph_resumes_the_child_run(store: Store) -> None:
    child = tg.record(_approval_graph().compile(), store=store, name="child")
    parent = StateGraph(S)
    parent.add_node("child", child)
    parent.add_edge(START, "child")
    app = parent.compile(checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "p1"}}
    assert "__interrupt__" in app.invoke({"xs": []}, config)
    assert [r.status for r in store.runs(graph="child")] == ["interrupted"]
    app.invoke(Command(resume="ok"), config)
    (run,) = store.runs(graph="child")
    assert run.status == "succeeded"
    assert [s.node for s in store.steps(run.id)] == ["draft", "ask", "ask", "send"]


def test_failing_node_marks_run_failed_and_keeps_earlier_steps(store: Store) -> None:
    def boom(state: S) -> dict:
        raise ValueError("the tool broke")

    g = StateGraph(S)
    g.add_node("a", _node(1))
    g.add_node("b", _node(2))
    g.add_node("boom", boom)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "boom")
    graph = tg.record(g.compile(), store=store)
    with pytest.raises(ValueError, match="the tool broke"):
        graph.invoke({"xs": []})
    (run,) = store.runs()
    assert run.status == "failed" and run.error == "ValueError: the tool broke" and run.ended_at is not None
    steps = store.steps(run.id)
    assert [(s.node, s.update, s.error) for s in steps] == [
        ("a", {"xs": [1]}, None),
        ("b", {"xs": [2]}, None),
        ("boom", None, "ValueError: the tool broke"),
    ]


def test_batch_abatch_astream_ainvoke_each_record_a_run(store: Store) -> None:
    graph = tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store, name="chain")
    outs = graph.batch([chain_start("a"), chain_start("b")])
    assert [o["reward"] for o in outs] == [1.0, 1.0]

    async def go() -> list[Any]:
        chunks = [c async for c in graph.astream(chain_start("c"), stream_mode="updates")]
        results = await graph.abatch([chain_start("d"), chain_start("e")])
        results.append(await graph.ainvoke(chain_start("f")))
        return [chunks, results]

    chunks, results = asyncio.run(go())
    assert [next(iter(c)) for c in chunks] == ["policy", "env", "policy", "env"]
    assert all(r["reward"] == 1.0 for r in results)
    runs = store.runs(graph="chain")
    assert len(runs) == 6 and {r.status for r in runs} == {"succeeded"}
    assert sorted(r.input["task"] for r in runs) == list("abcdef")
    assert all(len(store.steps(r.id)) == 4 for r in runs)
    streamed = next(r for r in runs if r.input["task"] == "c")
    assert streamed.output is None  # an "updates" stream never showed the final state
    assert next(r for r in runs if r.input["task"] == "f").output["reward"] == 1.0


def test_stream_values_and_multi_mode_record_output(store: Store) -> None:
    graph = tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store)
    list(graph.stream(chain_start("v"), stream_mode="values"))
    list(graph.stream(chain_start("m"), stream_mode=["updates", "values"], subgraphs=True))
    graph.invoke(chain_start("v2"), version="v2")
    outputs = {r.input["task"]: r.output for r in store.runs()}
    assert all(o is not None and o["reward"] == 1.0 for o in outputs.values()), outputs


def test_recorded_graph_as_a_node_of_another_graph(store: Store) -> None:
    child = tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store, name="child")
    parent = StateGraph(EnvState)
    parent.add_node("solve", child)
    parent.add_edge(START, "solve")
    out = parent.compile().invoke(chain_start("p"))  # the parent is not recorded: the child is its own run
    assert out["reward"] == 1.0
    (run,) = store.runs(graph="child")
    steps = store.steps(run.id)
    assert [s.node for s in steps] == ["policy", "env"] * 2
    assert all(s.namespace == "" for s in steps)  # relative to where the child run started
    assert run.metadata["checkpoint_ns"].startswith("solve:")

    recorded_parent = tg.record(parent.compile(), store=store, name="parent")  # both recorded: one run
    recorded_parent.invoke(chain_start("q"))
    (prun,) = store.runs(graph="parent")
    assert len(store.runs(graph="child")) == 1
    psteps = store.steps(prun.id)
    assert [s.node for s in psteps] == ["solve"] + ["policy", "env"] * 2
    assert all(s.namespace.startswith("solve:") for s in psteps[1:])


def test_checkpointer_config_and_langgraph_store_pass_through(store: Store, tmp_path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.config import get_store

    def remember(state: S) -> dict:
        get_store().put(("notes",), "k", {"v": 1})  # LangGraph's own BaseStore, not trajgraph's
        return {"xs": ["noted"]}

    g = StateGraph(S)
    g.add_node("remember", remember)
    g.add_edge(START, "remember")
    lg_store = InMemoryStore()
    with SqliteSaver.from_conn_string(str(tmp_path / "ckpt.db")) as saver:
        graph = tg.record(g.compile(checkpointer=saver, store=lg_store), store=store)
        assert graph.store is lg_store and graph.trajgraph_store is store  # type: ignore[attr-defined]  # record() is typed Pregel
        config: RunnableConfig = {"configurable": {"thread_id": "th-9"}, "tags": ["from-config"]}
        graph.invoke({"xs": []}, config)
        graph.invoke({"xs": []}, config)
        assert graph.get_state(config).values["xs"] == ["noted", "noted"]  # the checkpointer kept the thread
        bound = graph.with_config({"tags": ["bound"]})
        bound.invoke({"xs": []}, {"configurable": {"thread_id": "th-10"}})
    assert (item := lg_store.get(("notes",), "k")) is not None and item.value == {"v": 1}
    runs = store.runs(newest_first=False)
    assert [r.thread_id for r in runs] == ["th-9", "th-9", "th-10"]
    assert "from-config" in runs[0].tags and "bound" in runs[2].tags
    assert {r.status for r in runs} == {"succeeded"}


def test_record_rejects_what_it_cannot_wrap(store: Store) -> None:
    with pytest.raises(TypeError, match="compile"):
        tg.record(StateGraph(S), store=store)  # type: ignore[arg-type]  # the wrong type on purpose
    with pytest.raises(ValueError, match="not in graph"):
        tg.record(deceptive_chain_graph(), store=store, decision_nodes=["nope"])


def test_recording_twice_does_not_double_steps(store: Store) -> None:
    once = tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store, name="once")
    twice = tg.record(once, store=store, name="twice")
    twice.invoke(chain_start())
    (run,) = store.runs()
    assert run.graph == "twice" and len(store.steps(run.id)) == 4


def test_model_call_error_is_recorded(store: Store) -> None:
    class Broken(ScriptedToolModel):
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("model down")

    agent = tg.record(react_calculator_agent(Broken(script=["x"])), store=store)
    with pytest.raises(ConnectionError):
        agent.invoke({"messages": [("user", "hi")]})
    (run,) = store.runs()
    (call,) = store.model_calls(run.id)
    assert run.status == "failed" and call.error == "ConnectionError: model down" and call.step_seq == 0


def test_ai_message_ids_do_not_matter_for_actions(store: Store) -> None:
    model = ScriptedToolModel(script=[AIMessage(content="final", id="fixed")])
    agent = tg.record(react_calculator_agent(model), store=store)
    agent.invoke({"messages": [("user", "hi")]})
    (step,) = store.steps(store.runs()[0].id)
    assert step.action["messages"][0].content == "final"


def test_model_calls_reach_the_run_through_its_context_not_through_every_runnable(store: Store) -> None:
    """The run's model-call handler is added to each model call (a LangChain configure hook on a context
    of the run's own), not inherited by every node and chain: LangChain dispatches each chain event to
    an inherited handler, a cost per step that only model calls need (benchmarks/README.md)."""
    model = ScriptedToolModel(script=["routed", "in the node", "in a thread"])
    handlers: list[list[str]] = []

    def node(state: S, config: RunnableConfig) -> dict[str, Any]:
        handlers.append([type(h).__name__ for h in getattr(config["callbacks"], "handlers", ())])
        in_node = model.invoke("b", config)
        with ThreadPoolExecutor(1) as pool:  # copying the context, as LangGraph's and LangChain's executors do
            in_thread = pool.submit(contextvars.copy_context().run, model.invoke, "c").result()
        return {"xs": [in_node.content, in_thread.content]}

    def route(state: S) -> str:
        model.invoke("a")  # a model call in a routing function belongs to the run too
        return "n"

    builder = StateGraph(S)
    builder.add_node("n", node)
    builder.add_conditional_edges(START, route, ["n"])
    builder.add_edge("n", END)
    graph = tg.record(builder.compile(), store=store)
    chunks = []
    for chunk in graph.stream({"xs": []}, stream_mode="values"):
        chunks.append(chunk)
        # the caller's own model call between chunks is not the run's
        ScriptedToolModel(script=["caller"]).invoke("x")
    (run,) = store.runs()
    calls = store.model_calls(run.id)
    assert [c.response.content for c in calls] == ["routed", "in the node", "in a thread"], calls
    assert calls[1].step_seq == 0  # the node's step, from the config it was given
    assert handlers and not any("ModelCallRecorder" in names for names in handlers), handlers
    assert chunks[-1]["xs"] == ["in the node", "in a thread"]


def test_async_model_calls_reach_the_run_while_it_computes_and_the_callers_do_not(store: Store) -> None:
    """`astream` holds the run's model-call handler only while the graph computes a chunk: calls in async
    nodes (and in the tasks LangGraph starts for them) are the run's; the caller's between chunks are not."""
    model = ScriptedToolModel(script=["in the node", "in a task"])
    handlers: list[list[str]] = []

    async def node(state: S, config: RunnableConfig) -> dict[str, Any]:
        handlers.append([type(h).__name__ for h in getattr(config["callbacks"], "handlers", ())])
        in_node = await model.ainvoke("b", config)
        in_task = await asyncio.create_task(model.ainvoke("c"))
        return {"xs": [in_node.content, in_task.content]}

    builder = StateGraph(S)
    builder.add_node("n", node)
    builder.add_edge(START, "n")
    builder.add_edge("n", END)
    graph = tg.record(builder.compile(), store=store)

    async def go() -> list[Any]:
        chunks = []
        async for chunk in graph.astream({"xs": []}, stream_mode="values"):
            chunks.append(chunk)
            await ScriptedToolModel(script=["caller"]).ainvoke("x")
        return chunks

    chunks = asyncio.run(go())
    (run,) = store.runs()
    assert [c.response.content for c in store.model_calls(run.id)] == ["in the node", "in a task"]
    assert handlers and not any("ModelCallRecorder" in names for names in handlers), handlers
    assert chunks[-1]["xs"] == ["in the node", "in a task"]
