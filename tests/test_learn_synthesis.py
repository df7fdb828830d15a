"""Trajectory synthesis for coverage: dedupe, the novelty wrapper, task generation, collection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from trajgraph.adapters.gym_toytext import FrozenLakeSuite
from trajgraph.errors import ConfigError
from trajgraph.learn import NoveltyPolicy, Trajectory, collect, coverage_of, dedupe, generate_tasks
from trajgraph.learn.synthesis import RandomPolicy, decisions_of, similarity
from trajgraph.testing.chain_suite import ChainSuite


def _t(task: str, actions: str, outcome: float) -> Trajectory:
    acts = tuple(actions.split())
    states = tuple({"task": task, "observation": f"at {i}", "actions": ["a", "b", "c"], "history": []} for i in range(len(acts)))
    return Trajectory(task, states, acts, outcome)


def test_dedupe_drops_near_duplicates_keeps_distinct_ones_and_the_better_outcome() -> None:
    worse = _t("m", "right right down down right down", 0.0)
    better = _t("m", "right right down down right down down", 1.0)  # one step more: a near duplicate
    distinct = _t("m", "down down down right right right", 0.0)
    other_task = _t("n", "right right down down right down", 0.0)  # the same moves on another map stay
    assert similarity(worse.actions, better.actions) >= 0.8 > similarity(worse.actions, distinct.actions)
    kept = dedupe([worse, distinct, better, other_task], threshold=0.8)
    assert kept == [distinct, better, other_task]  # collection order kept; the worse near-copy is gone
    assert similarity(worse.actions, distinct.actions) == 0.75  # bigrams {rr, dd, dr} of {rr, rd, dd, dr}
    assert dedupe([worse, distinct, better, other_task], threshold=0.7) == [better, other_task]  # a looser threshold
    assert dedupe([worse, _t("m", "right right down down right down", 0.0)], threshold=0.8) == [worse]  # ties: the first
    with pytest.raises(ConfigError, match="threshold"):
        dedupe([worse], threshold=0.0)


class _Fixed:
    """Proposes a fixed order, including a command that is not admissible."""

    name = "fixed"

    async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
        return [{"action": a} for a in ("xyzzy", "a", "b", "c")][:max(k, 4)]


def test_novelty_prefers_unseen_actions_and_proposes_only_admissible_ones() -> None:
    state = {"task": "t", "observation": "o", "actions": ["a", "b", "c"], "history": []}
    policy = NoveltyPolicy(_Fixed())
    first = asyncio.run(policy.propose(state, 3))
    assert [c["action"] for c in first] == ["a", "b", "c"]  # nothing seen: the base's order, "xyzzy" dropped
    policy.observe(state, "a")
    assert asyncio.run(policy.propose(state, 1)) == [{"action": "b"}]
    policy.observe(state, "b")
    assert asyncio.run(policy.propose(state, 1)) == [{"action": "c"}]
    policy.observe(state, "c")
    assert asyncio.run(policy.propose(state, 1)) == [{"action": "a"}]  # all seen once: the base decides again
    elsewhere = dict(state, observation="somewhere else")  # counts are per situation
    assert asyncio.run(policy.propose(elsewhere, 1)) == [{"action": "a"}]
    for _ in range(5):
        action = asyncio.run(policy.propose(state, 1))[0]["action"]
        assert action in state["actions"]
        policy.observe(state, action)


def test_generated_tasks_are_the_suites_train_split_disjoint_from_its_test_split() -> None:
    suite = FrozenLakeSuite(size=4)
    train = generate_tasks(suite, 5, seed=0)
    test = suite.tasks("test", 5, 0)
    assert len({t.id for t in train}) == 5 and not {t.id for t in train} & {t.id for t in test}
    assert [t.id for t in generate_tasks(suite, 5, seed=0)] == [t.id for t in train]
    with pytest.raises(ConfigError):
        generate_tasks(suite, 0)


@pytest.mark.parametrize("suite", [ChainSuite(), FrozenLakeSuite(size=4)], ids=["chain", "frozenlake"])
def test_collection_with_novelty_covers_more_situation_actions_than_plain(suite: Any) -> None:
    tasks = generate_tasks(suite, 4, seed=0)
    plain = coverage_of(collect(tasks, RandomPolicy(seed=0), 32))
    novel_trajs = collect(tasks, NoveltyPolicy(RandomPolicy(seed=0)), 32)
    novel = coverage_of(novel_trajs)
    assert plain["trajectories"] == novel["trajectories"] == 32
    assert novel["situation_actions"] > plain["situation_actions"]
    assert coverage_of(collect(tasks, NoveltyPolicy(RandomPolicy(seed=0)), 32)) == novel  # repeatable
    assert all(a in s["actions"] for t in novel_trajs for s, a in zip(t.states, t.actions))


def test_decisions_come_only_from_successful_trajectories() -> None:
    task = ChainSuite().tasks("train", 1)[0]
    from trajgraph.learn.synthesis import rollout

    class _Oracle:
        async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
            return [{"action": task.solution[len(state["history"])]}]

    win = rollout(task, _Oracle())
    assert win.outcome == 1.0 and win.actions == task.solution
    lose = _t(task.id, "a b", 0.0)
    ds = decisions_of([win, lose])
    assert [d.action for d in ds] == list(task.solution) and all(d.task == task.id for d in ds)
