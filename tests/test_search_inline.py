"""The inline path (issue 12.4): repeatable searches of sync graphs step the graph in the
calling thread, with no thread-pool hop per node, and find the same tree."""

from __future__ import annotations

import threading

import pytest

import trajgraph as tg
from tests._search_helpers import SequencePolicy, line_graph, line_start
from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph


def _tree(result: tg.SearchResult) -> list[tuple]:
    assert result.space is not None
    return [(n.id, n.parent.id if n.parent else None, n.action_text, n.outcome, n.invalid) for n in result.space.nodes]


@pytest.mark.parametrize("optimizer", [tg.BestOfN(n=4), tg.RRO(k_max=3), tg.MCTS(k=3), tg.SEAgent(population=3)],
                         ids=lambda o: o.name)
def test_inline_and_async_paths_find_the_same_tree(optimizer):
    runs = {}
    for inline in (True, False):
        runs[inline] = tg.search(deceptive_chain_graph(depth=4, seed=3), chain_start(), decision_node="policy",
                                 optimizer=optimizer, budget=tg.Budget(policy_calls=30), repeatable=True, inline=inline)
        assert runs[inline].space.inline is inline
    assert _tree(runs[True]) == _tree(runs[False])
    assert runs[True].spent.policy_calls == runs[False].spent.policy_calls


def test_inline_runs_the_nodes_and_the_policy_in_the_calling_thread():
    threads: dict[str, set[int]] = {"node": set(), "policy": set()}
    graph = line_graph(goal=2)
    env = graph.builder.nodes["env"].runnable.func

    def watched_env(state):
        threads["node"].add(threading.get_ident())
        return env(state)

    graph = graph.builder
    graph.nodes["env"].runnable.func = watched_env
    compiled = graph.compile()

    class InlinePolicy(SequencePolicy):
        def propose_inline(self, state, k):
            threads["policy"].add(threading.get_ident())
            return [{"action": "forward"}] * k

    result = tg.search(compiled, line_start(), decision_node="policy", optimizer=tg.Greedy(),
                       policy=InlinePolicy({}), repeatable=True)
    assert result.outcome == 1.0 and result.space.inline
    assert threads["node"] == threads["policy"] == {threading.get_ident()}
    threads["node"].clear()
    tg.search(compiled, line_start(), decision_node="policy", optimizer=tg.Greedy(), policy=InlinePolicy({}))
    assert threading.get_ident() not in threads["node"]  # the async path hands each sync node to a pool


def test_inline_is_chosen_only_where_it_is_safe():
    async def async_policy(state):
        return {"action": "forward"}

    builder = line_graph().builder
    builder.nodes["policy"].runnable.afunc = async_policy
    builder.nodes["policy"].runnable.func = None
    space = tg.Space(builder.compile(), "policy", repeatable=True)
    assert space.inline is False  # an async-only node needs LangGraph's async path
    assert tg.Space(line_graph(), "policy", repeatable=True).inline is True
    assert tg.Space(line_graph(), "policy").inline is False  # concurrent branches need the event loop
