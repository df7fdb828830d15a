"""Search behaviours that a hand-made mutation of the library once left unnoticed
(issue 11, item 11): the token-budget stop, BestOfN's preference pairs, SE-Agent's
critical step, and the merging of duplicate candidates. Each test here fails when
the line it names is broken, and is driven by scripted policies (no model)."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from tests._search_helpers import SequencePolicy, line_graph, line_start
from trajgraph.search.budget import Budget, BudgetMeter
from trajgraph.search.optimize import search
from trajgraph.search.optimizers import BestOfN, Greedy, SEAgent
from trajgraph.search.optimizers.se_agent import actions_of, follow
from trajgraph.search.space import Space
from trajgraph.search.tree import TreeLog


def _acts(node) -> list[str]:
    return [a["action"] for a in actions_of(node)]


# -- the token budget (trajgraph/search/budget.py, BudgetMeter.exhausted) ------------------


class _TokenState(TypedDict, total=False):
    pos: int
    actions: list[str]
    action: str | None
    messages: Annotated[list, add_messages]
    history: Annotated[list, operator.add]
    reward: float | None
    done: bool


def _walk_graph() -> Any:
    """A walk that never ends by itself within the test's budget (goal far away)."""

    def policy(state: _TokenState) -> dict[str, Any]:
        return {"action": "forward"}

    def env(state: _TokenState) -> dict[str, Any]:
        pos = state.get("pos", 0) + 1
        done = pos >= 100
        return {"pos": pos, "done": done, "reward": 1.0 if done else None, "actions": ["forward"],
                "history": [{"action": state["action"]}]}

    g = StateGraph(_TokenState)
    g.add_node("policy", policy)
    g.add_node("env", env)
    g.add_edge(START, "policy")
    g.add_edge("policy", "env")
    g.add_conditional_edges("env", lambda s: END if s.get("done") else "policy", ["policy", END])
    return g.compile(name="walk")


class _TokenPolicy:
    """Every proposal reports 10 tokens used (as an AIMessage's usage_metadata)."""

    name = "tokens"

    def __init__(self) -> None:
        self.calls = 0

    async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
        self.calls += k
        usage = {"input_tokens": 6, "output_tokens": 4, "total_tokens": 10}
        return [{"action": "forward", "messages": [AIMessage(content="forward", usage_metadata=usage)]} for _ in range(k)]


def test_a_token_budget_stops_the_search_once_the_tokens_are_spent_and_not_before():
    policy = _TokenPolicy()
    result = search(_walk_graph(), {"pos": 0, "actions": ["forward"], "history": [], "done": False},
                    decision_node="policy", policy=policy, optimizer=Greedy(),
                    budget=Budget(tokens=40, finish=False), repeatable=True)
    spent = result.spent
    assert spent.stopped_by == "tokens"
    # 10 tokens a call: the 4th proposal reaches the limit (40 of 40); the search stops there, its step not taken
    assert spent.tokens == 40 and policy.calls == 4
    assert _acts(result.best) == ["forward"] * 3 and not result.best.terminal


# -- BestOfN's preference pairs (search/optimizers/best_of_n.py, _pair_at_divergence) -------


def test_best_of_n_pairs_the_winner_against_the_loser_where_they_diverge():
    # rollout 1: back, forward, forward -> at 2 after 3 turns (fail);
    # rollout 2: forward x3 -> at 3 (success). They diverge at the first step.
    policy = SequencePolicy({0: ["back", "forward", "forward"], 1: ["forward"], 2: ["forward"]})
    space = Space(line_graph(goal=3, max_turns=3), "policy", policy=policy,
                  meter=BudgetMeter(Budget(policy_calls=50)), repeatable=True)
    log = TreeLog()

    async def go():
        root = await space.root(line_start())
        return root, await BestOfN(n=4).search(space, root, log)

    root, best = asyncio.run(go())
    assert _acts(best) == ["forward"] * 3 and best.outcome == 1.0
    assert log.stats["trajectories"] == 2
    assert len(log.pairs) == 1
    pair = log.pairs[0]
    assert pair["source"] == "best_of_n" and pair["at"] is root
    assert _acts(pair["chosen"]) == ["forward"] and _acts(pair["rejected"]) == ["back"]
    assert pair["chosen"] in best.path()  # the chosen step is the winner's own
    assert pair["chosen_score"] == 1.0 and pair["rejected_score"] == 0.0


# -- SE-Agent's critical step (search/optimizers/se_agent.py, SEAgent.revise) ---------------


def test_se_agent_revises_at_the_step_with_the_largest_reward_drop():
    # member: forward (0 -> 1/3), back (1/3 -> 0: the largest drop, step 2), wait (0 -> 0)
    policy = SequencePolicy({0: ["forward"], 1: ["back", "forward"], 2: ["forward"], 3: ["forward"]})
    # transpositions off: the member must keep its step back to the start (with them, a state
    # reached again is expanded where it was first reached, and the walk would skip it)
    space = Space(line_graph(goal=3, max_turns=4), "policy", policy=policy, reward=lambda s: s.get("pos", 0) / 3,
                  meter=BudgetMeter(Budget(policy_calls=100)), repeatable=True, transpositions=False)

    async def go():
        root = await space.root(line_start())
        member = await follow(space, root, [{"action": x} for x in ("forward", "back", "wait", "wait")])
        return member, await SEAgent().revise(space, member)

    member, revised = asyncio.run(go())
    assert member.terminal and member.outcome == 0.0
    assert revised is not member
    assert "re-branched at step 2" in revised.reason
    # the prefix before the critical step is kept; the step itself is replaced
    assert _acts(revised)[0] == "forward" and _acts(revised)[1] == "forward"
    assert revised.path()[1] is member.path()[1]


# -- duplicate candidates merged (search/space.py, Space.propose) -------------------------


def test_candidates_with_the_same_canonical_action_are_merged_and_counted():
    policy = SequencePolicy({0: ["forward", "back", "forward", "forward"]})
    space = Space(line_graph(goal=3), "policy", policy=policy, meter=BudgetMeter(Budget(policy_calls=50)), repeatable=True)

    async def go():
        root = await space.root(line_start())
        return await space.propose(root, 4)

    cands = asyncio.run(go())
    assert policy.calls == 4
    assert [(c.action["action"], c.count) for c in cands] == [("forward", 3), ("back", 1)]
    assert len({c.key for c in cands}) == len(cands)
