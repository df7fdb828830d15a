"""A search's answer is a real answer, and its budget is a bound (issue 11, items 4 and 5)."""

from __future__ import annotations

import asyncio
import time

import pytest

import trajgraph as tg
from tests._search_helpers import SequencePolicy, line_graph, line_start

ALL = [tg.Greedy(), tg.BestOfN(n=2), tg.RRO(), tg.MCTS(), tg.SEAgent()]


class FlakyPolicy(SequencePolicy):
    """Raises `error` on the calls numbered in `fail_on` (1-based), else follows the script."""

    def __init__(self, script, fail_on, error=TimeoutError("provider timed out")):
        super().__init__(script)
        self.fail_on, self.error, self.n = set(fail_on), error, 0

    async def propose(self, state, k):
        self.n += 1
        if self.n in self.fail_on:
            raise self.error
        return await super().propose(state, k)


def test_best_of_n_never_returns_an_invalid_branch_over_a_valid_one():
    # the first rollout fails at once (a transient TimeoutError); the second ends at 0.0: both
    # score 0.0, and the invalid one won the tie by its id before
    policy = FlakyPolicy({p: ["wait"] for p in range(1)}, fail_on={1})
    result = tg.search(line_graph(max_turns=3), line_start(), decision_node="policy", optimizer=tg.BestOfN(n=2),
                       policy=policy, budget=tg.Budget(policy_calls=20))
    assert result.stats["trajectories"] == 2
    assert not result.best.invalid and result.best.terminal and result.outcome == 0.0
    assert result.status == "succeeded"


def test_greedy_after_a_rate_limit_finishes_from_the_last_good_decision_point():
    policy = FlakyPolicy({p: ["forward"] for p in range(4)}, fail_on={2}, error=RuntimeError("429 Too Many Requests"))
    result = tg.search(line_graph(goal=3), line_start(), decision_node="policy", optimizer=tg.Greedy(), policy=policy,
                       budget=tg.Budget(policy_calls=10))
    assert result.outcome == 1.0 and result.status == "succeeded" and not result.best.invalid
    assert result.finish.startswith("finished greedily from depth 1")
    assert any(n.invalid and "429" in n.reason for n in result.space.nodes)


def test_a_search_where_every_call_fails_ends_unfinished_in_the_store(tmp_path):
    store = tg.Store(tmp_path / "runs.db")
    policy = FlakyPolicy({0: ["forward"]}, fail_on=range(1, 1000))
    result = tg.search(line_graph(), line_start(), decision_node="policy", optimizer=tg.MCTS(), policy=policy,
                       budget=tg.Budget(policy_calls=12), store=store)
    assert result.status == "unfinished" and not result.finished and result.outcome is None
    assert result.spent.policy_calls <= 12
    run = store.run(result.run_id)
    assert run.status == "unfinished" and run.error.startswith("unfinished: ")


class StringPolicy:
    name = "strings"

    async def propose(self, state, k):
        return ["forward"] * k  # a bare action, not {"action": "forward"}


@pytest.mark.parametrize("optimizer", ALL, ids=lambda o: o.name)
def test_a_policy_returning_plain_strings_gives_invalid_candidates_with_the_reason(optimizer):
    result = tg.search(line_graph(), line_start(), decision_node="policy", optimizer=optimizer, policy=StringPolicy(),
                       budget=tg.Budget(policy_calls=8))
    invalid = [n for n in result.space.nodes if n.invalid]
    assert invalid and all("returned a str ('forward'), not a state update" in n.observation for n in invalid)
    assert result.status == "unfinished"


def test_an_update_the_graph_refuses_is_an_invalid_candidate():
    class Opaque:  # neither a dict nor a state object of the graph
        pass

    class WrongKey(SequencePolicy):
        async def propose(self, state, k):
            return [Opaque()] * k

    result = tg.search(line_graph(), line_start(), decision_node="policy", optimizer=tg.Greedy(),
                       policy=WrongKey({}), budget=tg.Budget(policy_calls=3))
    invalid = [n for n in result.space.nodes if n.invalid]
    assert invalid and "InvalidUpdateError" in invalid[0].observation and result.status == "unfinished"


def test_the_wall_time_limit_cancels_in_flight_calls():
    cancelled = []

    class Hanging:
        name = "hanging"

        async def propose(self, state, k):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return [{"action": "forward"}] * k

    t0 = time.perf_counter()
    result = tg.search(line_graph(), line_start(), decision_node="policy", optimizer=tg.MCTS(), policy=Hanging(),
                       budget=tg.Budget(policy_calls=20, wall_time_s=0.5))
    assert time.perf_counter() - t0 < 30  # a bound, not a speed target: it waited 60 s per call before
    assert cancelled and result.spent.stopped_by == "wall_time_s" and result.status == "unfinished"


def _wide_search(reserve: int | None) -> tg.SearchResult:
    # MCTS with a flat reward grows the tree breadth-first; no trajectory finishes in 20 calls
    policy = SequencePolicy({p: ["forward", "wait", "back"] for p in range(9)})
    return tg.search(line_graph(goal=5, max_turns=8), line_start(), decision_node="policy", optimizer=tg.MCTS(k=3),
                     policy=policy, reward=lambda s: 0.5, budget=tg.Budget(policy_calls=20, finish_reserve=reserve),
                     repeatable=True, transpositions=False)  # the line's turns are in history: its states would merge


def test_the_finish_is_paid_from_a_reserve_inside_the_budget():
    reserved = _wide_search(8)
    assert reserved.status == "succeeded" and reserved.best.terminal
    assert reserved.spent.overrun_policy_calls == 0 and 1 <= reserved.spent.finish_policy_calls <= 8
    # finished at the reserve line (12 calls), then the search went on with what was left
    assert reserved.spent.policy_calls == 20
    assert any("finished greedily from depth" in n.reason for n in reserved.space.nodes)
    auto = _wide_search(None)  # two fifths of the budget: 8 calls
    assert auto.status == "succeeded" and auto.spent.policy_calls <= 20 and 1 <= auto.spent.finish_policy_calls <= 8
    none = _wide_search(0)
    assert none.status == "unfinished" and none.spent.finish_policy_calls == 0 and none.spent.policy_calls == 20


@pytest.mark.parametrize("optimizer", ALL, ids=lambda o: o.name)
def test_a_policy_repeating_a_bad_action_stays_inside_the_call_budget(optimizer):
    # inadmissible actions are executed (the env ignores them) and marked invalid; the old greedy
    # finish ran such a trajectory to max_depth past the budget (12 calls became 101-112)
    policy = SequencePolicy({0: ["fly"]})
    result = tg.search(line_graph(goal=3, max_turns=200), line_start(), decision_node="policy", optimizer=optimizer,
                       policy=policy, budget=tg.Budget(policy_calls=12))
    assert result.spent.policy_calls <= 12 and result.spent.overrun_policy_calls == 0
    assert result.status == "unfinished"
