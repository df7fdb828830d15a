"""Concurrent branches vs `repeatable=True`: the same seed must give the same search."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests._search_helpers import line_graph, line_start
from trajgraph import MCTS, RRO, Budget, RolloutValue, SEAgent, search


class JitteryPolicy:
    """One seeded stream consumed in call order, after a random (unseeded) delay, like a
    model shared by concurrent branches: who asks first changes from run to run."""

    name = "jittery"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.jitter = random.Random()

    async def propose(self, state: dict[str, Any], k: int) -> list[dict[str, str]]:
        await asyncio.sleep(self.jitter.random() * 0.004)
        return [{"action": self.rng.choice(["forward", "forward", "back", "wait"])} for _ in range(k)]


def _tree(result: Any) -> list[tuple]:
    return [(n.id, n.parent.id if n.parent else None, n.action_text, n.outcome, n.visits) for n in result.space.nodes]


@pytest.mark.parametrize("optimizer,reward", [
    (MCTS(k=3), None),  # values children by concurrent simulations
    (RRO(group=2, k_max=4), RolloutValue(n=3)),  # Monte Carlo process reward: concurrent rollouts
    (SEAgent(population=3, generations=2), None),  # a population rolled out at once
], ids=["mcts", "rro", "se-agent"])
def test_repeatable_search_gives_the_same_tree_and_spend_every_time(optimizer: Any, reward: Any) -> None:
    def once(repeatable: bool = True) -> tuple:
        result = search(line_graph(goal=4, max_turns=8), line_start(), decision_node="policy", optimizer=optimizer,
                        reward=reward, budget=Budget(policy_calls=14), policy=JitteryPolicy(seed=7), repeatable=repeatable)
        return _tree(result), result.spent.policy_calls, result.outcome

    first = once()
    assert len(first[0]) > 5 and first[1] >= 14  # a real search that ran into its budget
    for _ in range(3):
        assert once() == first


def test_children_keep_the_order_they_were_asked_for_when_expansions_finish_out_of_order() -> None:
    result = search(line_graph(goal=4, max_turns=8), line_start(), decision_node="policy", optimizer=MCTS(k=3),
                    budget=Budget(policy_calls=30), policy=JitteryPolicy(seed=3))
    assert result.space is not None
    for node in result.space.nodes:
        ids = [c.id for c in node.children]
        assert ids == sorted(ids)
    assert [n.id for n in result.space.nodes] == sorted(n.id for n in result.space.nodes)


def test_repeatable_search_samples_the_agents_own_node_in_order() -> None:
    """No `policy=`: k samples of the agent's own model node. A stateful model (a script that
    cycles) answers in call order, so concurrent samples would be dealt out by timing."""
    from langchain_core.messages import HumanMessage

    from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent

    class JitteryScript(ScriptedToolModel):
        async def _agenerate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
            await asyncio.sleep(random.random() * 0.004)  # unseeded: which sample takes the next line varies
            return await super()._agenerate(messages, stop, run_manager, **kwargs)

    def once(repeatable: bool = True) -> list[tuple]:
        model = JitteryScript(script=[[fake_tool_call("add", a=i, b=1)] for i in range(5)] + ["done"])
        result = search(react_calculator_agent(model), {"messages": [HumanMessage(content="go")]}, decision_node="agent",
                        optimizer=MCTS(k=3), budget=Budget(policy_calls=12), repeatable=repeatable)
        return _tree(result)

    first = once()
    assert len(first) > 3
    assert once() == first


@pytest.mark.parametrize("optimizer", [MCTS(k=3), SEAgent(population=4)], ids=["mcts", "se-agent"])
def test_a_budget_stop_leaves_no_concurrent_branch_running(optimizer: Any) -> None:
    """Concurrent branches stop with the search: none goes on spending, unlimited, while
    the chosen trajectory is finished, and none adds nodes to the returned tree."""

    async def go() -> tuple[Any, int, int]:
        from trajgraph.search.optimize import asearch

        r = await asearch(line_graph(goal=30, max_turns=12), line_start(), decision_node="policy", optimizer=optimizer,
                          policy=JitteryPolicy(seed=3), budget=Budget(policy_calls=6))
        assert r.space is not None
        returned = len(r.space.nodes)
        await asyncio.sleep(0.3)  # a branch left running would keep expanding now
        return r, returned, len(r.space.nodes)

    for _ in range(3):
        result, returned, later = asyncio.run(go())
        assert result.spent.stopped_by == "policy_calls"
        assert later == returned
        # the finish is paid from the same 6 calls; branches left running added their own
        # rollouts here (60+ calls)
        assert result.spent.policy_calls <= 6 and result.spent.overrun_policy_calls == 0, result.spent
        assert result.best.terminal or result.status == "unfinished"
