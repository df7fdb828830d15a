"""Anytime searches and equal spend (issue 12, items 1 and 2): RRO and SE-Agent use
leftover budget until success; the paper's behaviour stays one flag away; no
optimizer spends past its budget in the bench."""

from __future__ import annotations

import asyncio
import zlib

import trajgraph as tg
from tests._search_helpers import SequencePolicy
from trajgraph.bench import OPTIMIZERS, run_bench, summarise
from trajgraph.testing.chain_suite import ChainSuite, NoisyOracle
from trajgraph.testing.tiny_env import chain_solution, chain_start, deceptive_chain_graph


def _rro(anytime: bool) -> tg.SearchResult:
    sol = chain_solution(4, 2)
    # the trap first: "jump" scores 0.3 at once (a rise over 0.0) and ends the episode
    policy = SequencePolicy({0: ["jump", sol[0]], 1: [sol[1]]})
    return tg.search(deceptive_chain_graph(depth=2, seed=4), chain_start(), decision_node="policy",
                     optimizer=tg.RRO(k_max=3, anytime=anytime), policy=policy, reward=lambda s: s.get("score", 0.0),
                     budget=tg.Budget(policy_calls=20))


def test_rro_backtracks_when_its_trajectory_ends_below_success():
    paper = _rro(anytime=False)
    assert paper.outcome == 0.3 and paper.spent.policy_calls == 1  # took the rising trap and stopped
    anytime = _rro(anytime=True)
    assert anytime.outcome == 1.0 and anytime.stats["backtracks"] == 1
    assert [n.action["action"] for n in anytime.best.path()[1:]] == chain_solution(4, 2)
    assert anytime.spent.policy_calls == 3  # the trap, then the right door at each room


def test_rro_stops_when_nothing_is_left_to_try():
    policy = SequencePolicy({0: ["jump"]})  # one idea only, and it is the trap
    result = tg.search(deceptive_chain_graph(depth=2, seed=4), chain_start(), decision_node="policy",
                       optimizer=tg.RRO(k_max=2), policy=policy, reward=lambda s: s.get("score", 0.0),
                       budget=tg.Budget(policy_calls=50))
    assert result.outcome == 0.3 and result.stats["exhausted"] is True
    assert result.spent.policy_calls == 4  # 2 x k_max draws at the root, then nothing left


def _se(anytime: bool, seed: int, success: float = 1.0) -> tg.SearchResult:
    return tg.search(deceptive_chain_graph(depth=5, seed=seed), chain_start(), decision_node="policy",
                     optimizer=tg.SEAgent(population=2, generations=1, anytime=anytime, success=success),
                     budget=tg.Budget(policy_calls=60), repeatable=True)


def test_se_agent_evolves_past_its_generations_while_budget_remains():
    # success out of reach (SE-Agent now finds this chain's optimum in about 27 calls): only the budget stops it
    paper, anytime = _se(False, 0, success=1.5), _se(True, 0, success=1.5)
    assert paper.stats["generations"] == 1 and paper.spent.policy_calls < 60
    # no success: anytime evolution goes on, spends the whole budget, and not one call more
    assert anytime.stats["generations"] > 1 and len(anytime.stats["fitness_per_generation"]) == anytime.stats["generations"] + 1
    assert anytime.spent.policy_calls == 60 and anytime.spent.overrun_policy_calls == 0


def test_the_bench_compares_optimizers_at_calls_spent_within_the_budget():
    tasks = ChainSuite(5).tasks("test", 6, 0)
    policy_for = lambda t: NoisyOracle(t, skill=0.6, seed=zlib.crc32(t.id.encode()))  # noqa: E731
    results = asyncio.run(run_bench(tasks, list(OPTIMIZERS), policy_for=policy_for, budget=12, repeatable=True))
    assert len(results) == 6 * len(OPTIMIZERS)
    for r in results:
        assert r.policy_calls <= 12 and r.overrun_policy_calls == 0, r
        assert r.success <= (r.status == "succeeded")  # an unfinished search never counts as a success
    for s in summarise(results, list(OPTIMIZERS)):
        assert s.overrun_policy_calls == 0 and s.policy_calls <= 12
