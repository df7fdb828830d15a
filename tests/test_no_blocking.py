"""Nothing trajgraph does on an async path blocks the event loop.

LangGraph Server runs every graph on one event loop and guards it with
`blockbuster`, which raises `BlockingError` when a blocking call (a SQLite
statement, a file read, `time.sleep`, waiting on a held lock) runs on a thread
that has a running loop. These tests run trajgraph's async paths under the same
guard, with all of its checks on (the server turns a few off): search (`asearch`,
and an optimized agent's `ainvoke`), recording of an async run (`ainvoke`,
`astream`, a failure, an interrupt and its resume), replay (`areplay`, `afork`)
and scoring (a local reward model, an LLM judge, a policy through litellm).

A blocking call inside a policy or a reward can be caught by the search and turned
into an invalid candidate, so besides the call failing, every `BlockingError`
blockbuster raises is collected and the test asserts there were none.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from blockbuster.blockbuster import BlockingError, blockbuster_ctx  # the dev extra; setup.sh installs it
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import trajgraph as tg
from trajgraph.testing import ScriptedToolModel, deceptive_chain_graph, react_calculator_agent
from trajgraph.testing.tiny_env import chain_start


@contextlib.contextmanager
def no_blocking() -> Iterator[list[str]]:
    """blockbuster with every check on; yields the list of blocking calls it caught (also those swallowed)."""
    caught: list[str] = []
    original = BlockingError.__init__

    def init(self: BlockingError, func: str, *args: Any, **kwargs: Any) -> None:
        caught.append(func)
        original(self, func, *args, **kwargs)

    BlockingError.__init__ = init  # type: ignore[method-assign]
    try:
        with blockbuster_ctx():
            yield caught
    finally:
        BlockingError.__init__ = original  # type: ignore[method-assign]


def test_the_guard_catches_a_blocking_sqlite_call(tmp_path: Path) -> None:
    """The guard itself: a SQLite statement on the loop's thread is caught (so a pass below means something)."""
    import sqlite3

    async def blocking() -> None:
        sqlite3.connect(str(tmp_path / "x.db")).execute("SELECT 1")

    with no_blocking() as caught, pytest.raises(BlockingError):
        asyncio.run(blocking())
    assert caught == ["sqlite3.Connection.execute"]


# -- search -----------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", [tg.BestOfN(n=3), tg.MCTS(), tg.RRO()], ids=lambda o: o.name)
def test_search_opens_and_writes_its_store_off_the_loop(tmp_path: Path, optimizer: Any) -> None:
    db = tmp_path / "runs.db"

    async def main() -> tg.SearchResult:
        # a store given by path is opened by the search itself: the first open must not block either
        return await tg.asearch(deceptive_chain_graph(), chain_start(), decision_node="policy", optimizer=optimizer,
                                outcome=lambda s: s.get("reward"), reward=lambda s: s.get("score", 0.0),
                                budget=tg.Budget(policy_calls=24), store=str(db), repeatable=True)

    with no_blocking() as caught:
        result = asyncio.run(main())
    assert caught == []
    store = tg.Store(db)
    (search,) = store.runs(kind="search")
    assert search.status == "succeeded" and search.id == result.run_id
    assert len(store.search_nodes(search.id)) == result.nodes > 1
    assert [r.id for r in store.runs(kind="rollout", tag="best")] == [rid for rid in result.rollout_ids
                                                                       if "best" in store.run(rid).tags]


def test_optimized_agent_ainvoke_and_a_failed_search_do_not_block(tmp_path: Path) -> None:
    store = tg.Store(tmp_path / "runs.db")
    agent = tg.optimize(deceptive_chain_graph(), decision_node="policy", optimizer=tg.BestOfN(n=2),
                        outcome=lambda s: s.get("reward"), budget=tg.Budget(policy_calls=10), store=store, repeatable=True)

    def broken(state: dict) -> dict:
        raise RuntimeError("the environment broke")

    from trajgraph.envloop import env_loop

    failing = tg.optimize(env_loop(broken, lambda s: {"action": "left"}, reset_node=broken), decision_node="policy",
                          budget=tg.Budget(policy_calls=4), store=store)

    async def main() -> tuple[dict, BaseException | None]:
        out = await agent.ainvoke(chain_start())
        try:
            await failing.ainvoke(chain_start())
        except RuntimeError as exc:
            return out, exc
        return out, None

    with no_blocking() as caught:
        out, error = asyncio.run(main())
    assert caught == []
    assert out["done"] is True and isinstance(error, RuntimeError)
    assert sorted(r.status for r in store.runs(kind="search")) == ["failed", "succeeded"]


# -- recording -----------------------------------------------------------------------------------


class S(TypedDict, total=False):
    xs: Annotated[list, operator.add]


def _approval_graph() -> Any:
    async def draft(state: S) -> dict:
        await asyncio.sleep(0)
        return {"xs": ["draft"]}

    g = StateGraph(S)
    g.add_node("draft", draft)
    g.add_node("ask", lambda state: {"xs": [interrupt("approve?")]})
    g.add_node("send", lambda state: {"xs": ["send"]})
    g.add_edge(START, "draft")
    g.add_edge("draft", "ask")
    g.add_edge("ask", "send")
    g.add_edge("send", END)
    return g.compile()


def test_recording_an_async_run_does_not_block(store: tg.Store, calculator_script: Any) -> None:
    agent = tg.record(react_calculator_agent(ScriptedToolModel(script=calculator_script(2))), store=store, name="calc")

    async def main() -> tuple[Any, list[Any]]:
        out = await agent.ainvoke({"messages": [("user", "what is (1+2)*3?")]})
        chunks = [c async for c in agent.astream({"messages": [("user", "again")]}, stream_mode="updates")]
        return out, chunks

    with no_blocking() as caught:
        out, chunks = asyncio.run(main())
    assert caught == []
    assert out["messages"][-1].content == "the answer is 42" and len(chunks) == 5
    runs = store.runs(graph="calc")
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert all(len(store.steps(r.id)) == 5 and len(store.model_calls(r.id)) == 3 for r in runs)


def test_a_failed_and_an_interrupted_async_run_are_stored_without_blocking(store: tg.Store) -> None:
    graph = tg.record(_approval_graph(), store=store, name="hitl", checkpointer=InMemorySaver())

    async def explode(state: S) -> dict:
        raise ValueError("the tool broke")

    g = StateGraph(S)
    g.add_node("boom", explode)
    g.add_edge(START, "boom")
    failing = tg.record(g.compile(), store=store, name="boom")
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}

    async def main() -> tuple[Any, Any]:
        first = await graph.ainvoke({"xs": []}, config)
        with pytest.raises(ValueError, match="the tool broke"):
            await failing.ainvoke({"xs": []})
        done = [c async for c in graph.astream(Command(resume="yes"), config, stream_mode="values")]
        return first, done[-1]

    with no_blocking() as caught:
        first, last = asyncio.run(main())
    assert caught == []
    assert "__interrupt__" in first and last == {"xs": ["draft", "yes", "send"]}
    (run,) = store.runs(graph="hitl")
    assert run.status == "succeeded" and run.metadata["resumes"][0].resume == "yes"
    assert [s.node for s in store.steps(run.id)] == ["draft", "ask", "ask", "send"]
    (failed,) = store.runs(graph="boom")
    assert failed.error is not None
    assert failed.status == "failed" and "the tool broke" in failed.error


# -- replay -------------------------------------------------------------------------------------


def test_replay_and_fork_run_off_the_loop(store: tg.Store, calculator_script: Any) -> None:
    agent = tg.record(react_calculator_agent(ScriptedToolModel(script=calculator_script(2))), store=store, name="calc")
    agent.invoke({"messages": [("user", "what is (1+2)*3?")]})
    (run,) = store.runs()

    async def main() -> tuple[Any, Any]:
        replayed = await tg.areplay(store, run.id, agent)
        forked = await tg.afork(store, run.id, agent, at=2, action={"messages": [AIMessage(content="forked here")]})
        return replayed, forked

    with no_blocking() as caught:
        replayed, forked = asyncio.run(main())
    assert caught == []
    assert replayed.matched and replayed.answered == 3 and store.run(replayed.run_id).kind == "replay"
    assert forked.kind == "fork" and forked.output["messages"][-1].content == "forked here"
    assert store.run(forked.run_id).parent_id == run.id and store.run(forked.run_id).kind == "fork"


# -- scoring and policies --------------------------------------------------------------------------


def test_reward_scoring_and_policies_do_not_block(tmp_path: Path) -> None:
    from trajgraph.reward import LocalRewardModel, RewardItem, init_model
    from trajgraph.search.policy import LiteLLMPolicy

    model = LocalRewardModel(init_model(tmp_path / "rm", max_length=64), device="cpu")
    judge = tg.LLMJudge("openai/gpt-4o-mini", mock_response="Reflection: fine.\nScore: 8")
    mixed = tg.Weighted([(model, 0.5), (judge, 0.5)])
    policy = LiteLLMPolicy("openai/gpt-4o-mini", extra={"mock_response": "forward"}, use_n=False)
    items = [RewardItem(task="reach 3", turns=(("forward", "at 1"),), action=a) for a in ("forward", "back")]
    state = {"task": "reach 3", "observation": "at 0", "actions": ["forward", "back"], "history": []}
    expected = model.score(items)

    async def main() -> tuple[list[float], list[float], list[float], list[Any]]:
        return await model.ascore(items), await judge.ascore(items), await mixed.ascore(items), await policy.propose(state, 2)

    with no_blocking() as caught:
        local, judged, weighted, actions = asyncio.run(main())
    assert caught == []
    assert local == pytest.approx(expected) and judged == [0.8, 0.8]
    assert weighted == pytest.approx([(a + b) / 2 for a, b in zip(local, judged)])
    assert actions == [{"action": "forward"}, {"action": "forward"}]
