"""The apprentice search: the policy's own trajectory, then its next-best actions where it was most doubtful.

On the deceptive chain a deterministic policy that knows every door but prefers the
trap at a few rooms (the right door a close second there) fails greedily with 0.3.
The apprentice finds each slip from the policy's own doubt and fixes it with a few
rollouts of the same policy: the states a search from the start rarely reaches are
the ones it relabels (DAgger / ExIt data), and it is also a cheap search.
"""

from __future__ import annotations

from typing import Any

import trajgraph as tg
from trajgraph.envloop import env_loop_graph
from trajgraph.search.optimizers import BY_NAME, Apprentice
from trajgraph.testing.chain import chain_solution, chain_start, deceptive_chain_graph
from trajgraph.trajectory import SearchNode

DEPTH, SEED = 5, 3


class SlipPolicy:
    """The right door everywhere, except at the rooms in `slips`, where "jump" (the trap) scores
    just above the right door; gives its scores, so the search sees how sure it was."""

    def __init__(self, slips: tuple[int, ...]) -> None:
        self.solution = chain_solution(SEED, DEPTH)
        self.slips = slips
        self.calls = 0

    def scores(self, state: dict[str, Any], actions: list[str]) -> list[float]:
        pos = int(state.get("pos", 0))
        right = self.solution[pos]
        if pos in self.slips:
            return [2.0 if a == "jump" else 1.8 if a == right else 0.0 for a in actions]
        return [3.0 if a == right else 0.0 for a in actions]

    async def propose(self, state: dict[str, Any], k: int) -> list[dict[str, str]]:
        self.calls += 1
        actions = list(state["actions"])
        scores = self.scores(state, actions)
        return [{"action": actions[scores.index(max(scores))]}] * k


def _search(optimizer: Any, policy: SlipPolicy, calls: int = 60, store: Any = None) -> Any:
    return tg.search(deceptive_chain_graph(depth=DEPTH, seed=SEED), chain_start(), optimizer=optimizer, policy=policy, decision_node="policy",
                     budget=tg.Budget(policy_calls=calls), repeatable=True, store=store)


def test_apprentice_fixes_the_slip_where_the_policy_was_least_sure() -> None:
    greedy = _search("greedy", SlipPolicy((3,)))
    assert greedy.outcome == 0.3  # the trap at room 3
    got = _search(Apprentice(states=1), SlipPolicy((3,)))  # one state may be tried: it must be room 3
    assert got.outcome == 1.0
    assert got.stats["states_tried"] == 1 and got.stats["apprentice_outcome"] == 0.3
    assert got.spent.policy_calls <= 4 + 2 + 1  # its own 4 calls, then the right door and one call to the end


def test_a_second_slip_on_the_fixed_trajectory_is_found_too() -> None:
    got = _search(Apprentice(), SlipPolicy((1, 3)))
    assert got.outcome == 1.0  # room 1 fixed, then room 3 on the trajectory that fix led to
    assert got.stats["states_tried"] == 2
    stuck = _search(Apprentice(states=1), SlipPolicy((1, 3)))
    assert stuck.outcome == 0.3


def test_a_successful_policy_costs_one_greedy_run(tmp_path: Any) -> None:
    policy = SlipPolicy(())
    got = _search(Apprentice(), policy)
    assert got.outcome == 1.0 and got.spent.policy_calls == DEPTH and "states_tried" not in got.stats


def test_the_stored_tree_holds_the_policys_choice_and_the_fix(tmp_path: Any) -> None:
    store = tg.Store(tmp_path / "s.db")
    got = _search(Apprentice(), SlipPolicy((3,)), store=store)
    nodes: list[SearchNode] = store.search_nodes(got.run_id)
    at_room3 = [n for n in nodes if n.depth == 4]  # children of the state at room 3
    assert {n.action_text for n in at_room3} >= {"jump", chain_solution(SEED, DEPTH)[3]}
    assert "apprentice" in BY_NAME and got.outcome == 1.0


def _corridors() -> Any:
    """Three corridors, "a", "b", "c", two steps long: only "c" leads to the exit (1.0); the
    others end with 0 after their two steps, so trying one costs policy calls."""

    def env(state: dict[str, Any]) -> dict[str, Any]:
        action, pos = state.get("action"), int(state.get("pos", 0)) + 1
        corridor = action if pos == 1 else state["observation"].split(",")[0].split()[1]
        done = pos == 3
        obs = f"corridor {corridor}, step {pos}"
        reward = (1.0 if corridor == "c" else 0.0) if done else None
        return {"pos": pos, "observation": obs, "actions": [] if done else ["walk"], "done": done, "reward": reward,
                "history": [{"action": action, "observation": obs, "reward": reward}]}

    return env_loop_graph(env, lambda s: {"action": s["actions"][0]}, "corridors").compile(name="corridors")


class CorridorPolicy:
    """Prefers corridor a, then b, then c (close calls: the start is its most doubtful state)."""

    def scores(self, state: dict[str, Any], actions: list[str]) -> list[float]:
        return [{"a": 3.0, "b": 2.9, "c": 2.8}.get(a, 1.0) for a in actions]

    async def propose(self, state: dict[str, Any], k: int) -> list[dict[str, str]]:
        scores = self.scores(state, list(state["actions"]))
        return [{"action": state["actions"][scores.index(max(scores))]}] * k


def _walk(reward: Any = None, **options: Any) -> Any:
    start = {"task": "find the exit", "observation": "a hall with three corridors", "actions": ["a", "b", "c"], "pos": 0, "done": False,
             "history": []}
    return tg.search(_corridors(), start, optimizer=Apprentice(width=2, **options), policy=CorridorPolicy(), decision_node="policy",
                     budget=tg.Budget(policy_calls=30), repeatable=True, reward=reward)


def test_a_value_model_orders_the_alternatives_it_tries() -> None:
    value = lambda state: 1.0 if state.get("observation", "").startswith("corridor c") else 0.0  # noqa: E731
    plain = _walk()  # the policy's order: corridor b is rolled out (2 calls) before c
    valued = _walk(value)  # c first: the value model ranks it above b
    assert plain.outcome == valued.outcome == 1.0
    assert valued.spent.policy_calls == plain.spent.policy_calls - 2
    assert _walk(value, by_value=False).spent.policy_calls == plain.spent.policy_calls  # the option restores the policy's order
    worse = _walk(lambda state: 1.0 if state.get("observation", "").startswith("corridor b") else 0.0)
    assert worse.spent.policy_calls == plain.spent.policy_calls  # a value model that prefers b: b first, as the policy's order
