"""gym toy-text adapter: value iteration, the env-loop graph, and search over LangGraph checkpoints."""

from __future__ import annotations

import heapq
import itertools
from typing import Any, cast

import gymnasium as gym
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from trajgraph.adapters.gym_toytext import (
    CliffWalkingSuite,
    FrozenLakeSuite,
    TaxiSuite,
    cliffwalking_task,
    frozenlake_task,
    optimal_return,
    taxi_task,
    value_iteration,
)
from trajgraph.envloop import oracle_policy
from trajgraph.envloop.task import TaskSpec
from trajgraph.errors import ConfigError


def run(task: TaskSpec, policy) -> dict:
    graph, env = task.make_graph(policy)
    assert env is None  # the graph state holds the whole environment
    return graph.invoke(task.input, {"recursion_limit": 4 * task.max_steps + 10})


def scripted(actions):
    it = iter(actions)
    return lambda state: {"action": next(it)}


def gym_return(env_id: str, actions: list[str], words: tuple[str, ...], start: int | None = None, **kw) -> tuple[float, bool]:
    """Play the actions in the real gym env (its own step, not our tables)."""
    env = gym.make(env_id, **kw)
    env.reset(seed=0)
    if start is not None:
        cast(Any, env.unwrapped).s = start  # the toy-text envs keep their state in `s`
    total, terminated = 0.0, False
    for a in actions:
        _, r, terminated, _, _ = env.step(words.index(a))
        total += float(r)
        if terminated:
            break
    return total, terminated


def test_value_iteration_known_optima():
    lake, cliff = frozenlake_task(4), cliffwalking_task()
    assert value_iteration(lake).optimum == 1.0 and optimal_return(lake) == 1.0
    assert optimal_return(cliff) == -13.0  # 13 steps along row 2, the documented optimum
    assert value_iteration(cliff).optimum == 1.0
    taxi = taxi_task(seed=3)
    assert 0 < optimal_return(taxi) <= 18  # 20 for delivery minus at least 2 more steps
    with pytest.raises(ConfigError):
        value_iteration(TaskSpec("x", {}, "policy", lambda p: (None, None), lambda s: None, 5))


@pytest.mark.parametrize("make, env_id, kw", [
    (lambda: frozenlake_task(4), "FrozenLake-v1", {"is_slippery": False, "map_name": "4x4"}),
    (lambda: frozenlake_task(8), "FrozenLake-v1", {"is_slippery": False, "map_name": "8x8"}),
    (lambda: cliffwalking_task(), "CliffWalking-v1", {}),
    (lambda: taxi_task(seed=3), "Taxi-v4", {}),
])
def test_oracle_plays_the_optimum_in_graph_and_in_gym(make, env_id, kw):
    task = make()
    out = run(task, oracle_policy(task.oracle))
    actions = [h["action"] for h in out["history"]]
    assert out["done"] and task.outcome(out) == 1.0 == task.optimum
    assert out["score"] == optimal_return(task)
    words = tuple(task.input["actions"])
    ret, terminated = gym_return(env_id, actions, words, start=task.input["pos"], **kw)
    assert terminated and ret == out["score"]  # our tables agree with gym's own step


def test_frozenlake_generated_maps_and_text():
    a, b, c = frozenlake_task(4, seed=3), frozenlake_task(4, seed=3), frozenlake_task(4, seed=4)
    assert a.id == "frozenlake-4x4-s3" and a.input == b.input and a.input["task"] != c.input["task"]
    assert "S" in a.input["task"] and "row 0, col 0" in a.input["observation"]
    assert a.input["actions"] == ["left", "down", "right", "up"]
    lake = frozenlake_task(4)  # standard map: down from (0,0) is frozen, (1,1) is a hole
    out = run(lake, scripted(["right", "down"]))
    assert out["done"] and out["reward"] == 0.0 and "hole" in out["observation"]
    assert lake.outcome(out) == 0.0 and lake.outcome(lake.input) is None


def test_invalid_action_is_a_noop_and_step_limit_ends():
    task = cliffwalking_task(max_steps=3)
    out = run(task, scripted(["jump", "up", "left"]))
    assert out["history"][0]["observation"].startswith("'jump' is not an action")
    assert out["done"] and out["reward"] == 0.0 and out["score"] == -2.0 and len(out["history"]) == 3
    assert "step limit" in out["observation"] and out["actions"] == []


def test_cliff_outcome_is_normalised_cost():
    task = cliffwalking_task()
    # right from the start falls off the cliff (-100, back to start), then the optimal 13 steps
    sol = value_iteration(task)
    path = ["right"]
    s, steps = task.input["pos"], 1
    mdp = sol.mdp
    s = int(mdp.next[s, mdp.actions.index("right")])
    while True:
        a = sol.best_action(s, task.max_steps - steps)
        path.append(a)
        i = mdp.actions.index(a)
        done, s, steps = bool(mdp.terminal[s, i]), int(mdp.next[s, i]), steps + 1
        if done:
            break
    out = run(task, scripted(path))
    assert out["score"] == -113.0 and task.outcome(out) == pytest.approx(13 / 113)


def test_taxi_illegal_actions_cost_and_text():
    task = taxi_task(seed=3)
    out = run(task, scripted(["dropoff"] + ["pickup"] * (task.max_steps - 1)))
    assert out["history"][0]["observation"].startswith("Illegal dropoff (-10)")
    assert out["done"] and out["reward"] == 0.0  # never delivered
    assert "passenger" in task.input["observation"] and "R, G, Y, B" in task.input["task"]


def checkpoint_search(task: TaskSpec) -> tuple[float, float, int]:
    """Uniform-cost search over LangGraph checkpoints: every branch is update_state(as_node='policy') + invoke(None).

    Dedupes on the gym state (deterministic tables: the first, cheapest visit dominates).
    Returns (best outcome, best raw return, branches).
    """
    graph, _ = task.make_graph(lambda state: {"action": state["actions"][0]})
    g = graph.builder.compile(checkpointer=InMemorySaver(), interrupt_before=["policy"])
    thread = {"configurable": {"thread_id": f"search-{task.id}"}}
    g.invoke(task.input, thread)
    root = g.get_state(thread)
    assert root.next == ("policy",)
    tie = itertools.count()
    frontier = [(0.0, next(tie), root.config)]
    seen: set[int] = set()
    best_outcome, best_return, branches = 0.0, float("-inf"), 0
    while frontier:
        _, _, config = heapq.heappop(frontier)
        state = g.get_state(config).values
        if state["pos"] in seen:
            continue
        seen.add(state["pos"])
        for action in state["actions"]:
            child_config = g.update_state(config, {"action": action}, as_node="policy")
            g.invoke(None, child_config)
            child = g.get_state(thread)  # the newest checkpoint of the thread: this branch's next decision point
            branches += 1
            values = child.values
            assert values["history"][-1]["action"] == action and len(values["history"]) == len(state["history"]) + 1
            if values["done"]:
                outcome = task.outcome(values)
                assert outcome is not None
                best_outcome = max(best_outcome, outcome)
                if values["reward"] > 0:
                    best_return = max(best_return, values["score"])
            else:
                heapq.heappush(frontier, (-values["score"], next(tie), child.config))
    return best_outcome, best_return, branches


@pytest.mark.parametrize("task", [frozenlake_task(4), cliffwalking_task(), frozenlake_task(4, seed=11)], ids=lambda t: t.id)
def test_checkpoint_search_reaches_value_iteration_optimum(task):
    outcome, ret, branches = checkpoint_search(task)
    assert outcome == task.optimum == 1.0
    assert ret == optimal_return(task)
    assert branches >= 4


def test_suites_are_deterministic_and_disjoint():
    for suite in (FrozenLakeSuite(), CliffWalkingSuite(), TaxiSuite()):
        test = [t.id for t in suite.tasks("test", 8)]
        again = [t.id for t in suite.tasks("test", 8)]
        train = [t.id for t in suite.tasks("train", 8)]
        assert test == again and len(set(test)) == 8
        assert not set(test) & set(train), suite.name
        assert [t.id for t in suite.tasks("test", 3, seed=1)] != test[:3]
    all_cliff = CliffWalkingSuite().tasks("test", 100) + CliffWalkingSuite().tasks("train", 100)
    assert len({t.id for t in all_cliff}) == 37
    with pytest.raises(ConfigError):
        FrozenLakeSuite().tasks("dev", 2)
