"""The default state key (trajgraph/search/_situation.py): which decision states are the
same situation when the user passes no `state_key=`. Seeded, correctness only."""

from __future__ import annotations

import asyncio
from typing import Any

from tests._search_helpers import LineState, policy_env_graph
from trajgraph.search._situation import dominates
from trajgraph.search.budget import Budget, BudgetMeter
from trajgraph.search.space import Space
from trajgraph.testing.known_optimum import MOVES, KeyMazeSuite, MazeState


def _space(graph: Any, calls: int = 50, **kw: Any) -> Space:
    return Space(graph, "policy", meter=BudgetMeter(Budget(policy_calls=calls)), repeatable=True, **kw)


def _cliff():
    from trajgraph.adapters.gym_toytext import CliffWalkingSuite

    task = CliffWalkingSuite().tasks("test", 1, seed=1)[0]  # starts at row 1, col 3, in open ground
    graph, env = task.make_graph(lambda s: {"action": "up"})
    return task, graph, env


def test_cliffwalking_meets_itself_through_the_running_return_and_the_feedback_text():
    task, graph, env = _cliff()

    async def go(**kw):
        space = _space(graph, environment=env, **kw)
        root = await space.root(task.input)
        up = await space.expand(root, {"action": "up"})
        back = await space.expand(up, {"action": "down"})  # the start cell again: score -2, "You go down. ..."
        right = await space.expand(root, {"action": "right"})
        left = await space.expand(right, {"action": "left"})
        return space, root, back, left

    space, root, back, left = asyncio.run(go())
    assert back.state["score"] == -2.0 and back.state["observation"] != root.state["observation"]
    assert back.twin is root and left.twin is root and space.merged == 2
    # the path is all that differed: the same two walks with the history-only key of before merge nothing
    space, root, back, left = asyncio.run(go(state_key=lambda s: {k: v for k, v in s.items() if k not in ("history", "action")}))
    assert back.twin is None and left.twin is None and space.merged == 0


def test_a_state_stands_for_another_only_if_it_dominates():
    assert dominates(0, {"score": 0.0}, 2, {"score": -2.0})  # sooner, and no less return
    assert not dominates(0, {"score": -5.0}, 2, {"score": 1.0})  # sooner but poorer
    assert not dominates(2, {"score": 3.0}, 0, {"score": 0.0})  # richer but later
    assert dominates(1, {"score": "n/a"}, 3, {"score": "n/a"}) and not dominates(1, {"score": "a"}, 3, {"score": "b"})


class _CoinState(LineState, total=False):
    score: float  # the running return


def _coin_graph(policy: Any = None, actions: tuple[str, ...] = ("right", "left", "coin"), width: int = 0) -> Any:
    """A line with a coin to pick up where you stand: `coin` adds 1 to the running score.
    `go` steps to the other end of a line of `width` + 1 cells; 8 turns, counted in the history."""

    def env(state: dict[str, Any]) -> dict[str, Any]:
        a = state["action"]
        pos = state["pos"] + {"right": 1, "left": -1}.get(a, 0)
        pos = width - pos if a == "go" else pos
        score = state["score"] + (1.0 if a == "coin" else 0.0)
        done = len(state.get("history") or []) + 1 >= 8
        return {"pos": pos, "score": score, "observation": f"at {pos}", "done": done, "reward": score if done else None,
                "actions": list(actions), "history": [{"action": a}]}

    return policy_env_graph(_CoinState, policy or (lambda s: {"action": "right"}), env)


def test_a_richer_state_reached_later_keeps_its_own_node():
    start = {"task": "coins", "pos": 0, "score": 0.0, "observation": "at 0", "actions": ["right", "left", "coin"], "history": [],
             "done": False, "reward": None}

    async def go():
        space = _space(_coin_graph())
        root = await space.root(start)
        coin = await space.expand(root, {"action": "coin"})  # the same cell, one coin richer
        right = await space.expand(coin, {"action": "right"})
        back = await space.expand(right, {"action": "left"})  # that cell and that coin again, later
        poor = await space.expand(await space.expand(root, {"action": "right"}), {"action": "left"})  # root's cell, no coin
        return root, coin, back, poor

    root, coin, back, poor = asyncio.run(go())
    assert coin.twin is None and coin.key != root.key  # the root is poorer: it cannot stand for it
    assert back.twin is coin  # equal score, sooner: the coin node stands for it
    assert poor.twin is root


def _maze():
    task = KeyMazeSuite().tasks("test", 1)[0]
    graph, _ = task.make_graph(lambda s: {"action": task.admissible(tuple(s["pos"]))[0]})
    return task, graph


def _back(move: str) -> str:
    dx, dy = MOVES[move]
    return next(m for m, d in MOVES.items() if d == (-dx, -dy))


def test_a_turn_counter_is_learned_and_the_depth_stands_in_for_it():
    task, graph = _maze()
    moves = task.admissible(task.start)
    assert len(moves) >= 2

    async def go():
        space = _space(graph)
        root = await space.root(task.input)
        first = [await space.expand(root, {"action": m}) for m in moves[:2]]  # two places at one turn
        back = await space.expand(first[0], {"action": _back(moves[0])})  # the start, at turn 2
        there = await space.expand(first[1], {"action": _back(moves[1])})  # the start, at turn 2, another way
        again = await space.expand(await space.expand(back, {"action": moves[1]}, merge=False), {"action": _back(moves[1])},
                                   merge=False)  # the start, at turn 4
        return space, first, back, there, again

    space, first, back, there, again = asyncio.run(go())
    assert space.situations.clocks == {"turn": 1}
    assert there.twin is back  # one turn, one cell: merged with or without the counter
    assert again.state["turn"] == 4 and again.twin is back  # two turns later: the depth stands in for the counter
    assert first[0].key != first[1].key != back.key  # places stay apart


def test_a_place_that_advances_with_every_step_is_not_taken_for_a_clock():
    from trajgraph.testing import tiny_env

    sol = tiny_env.chain_solution(0, 4)
    graph = tiny_env.env_loop_graph(tiny_env.chain_env_node(sol), lambda s: {"action": "jump"}).compile()

    async def go():
        space = _space(graph)
        root = await space.root(tiny_env.chain_start())
        room1 = await space.expand(root, {"action": sol[0]})
        wrong = next(a for a in ("left", "right", "up") if a != sol[1])
        await space.expand(room1, {"action": wrong})  # the floor gives way: pos stays 1 at depth 2
        room2 = await space.expand(room1, {"action": sol[1]})
        return space, root, room1, room2

    space, root, room1, room2 = asyncio.run(go())
    assert space.situations.clocks == {} and "pos" not in space.situations.slopes
    assert len({root.key, room1.key, room2.key}) == 3 and space.merged == 0


def _bell_graph() -> Any:
    """How often the bell rang lives only in the observation text: the message carries state."""

    def env(state: dict[str, Any]) -> dict[str, Any]:
        rang = int(state["observation"].split()[1])
        a = state["action"]
        pos = state["pos"] + {"right": 1, "left": -1}.get(a, 0)
        rang += a == "ring"
        done = len(state.get("history") or []) + 1 >= 6
        return {"pos": pos, "observation": f"rang {rang} times", "done": done, "reward": float(rang) if done else None,
                "actions": ["right", "left", "ring"], "history": [{"action": a}]}

    return policy_env_graph(LineState, lambda s: {"action": "ring"}, env)


def test_an_observation_that_carries_state_is_keyed_once_the_same_step_is_told_two_ways():
    start = {"task": "bell", "pos": 0, "observation": "rang 0 times", "actions": ["right", "left", "ring"], "history": [], "done": False,
             "reward": None}

    async def go():
        space = _space(_bell_graph())
        root = await space.root(start)
        once = await space.expand(root, {"action": "ring"})
        merged_before = once.twin is root  # pos alone looked like the situation
        twice = await space.expand(once, {"action": "ring"}, merge=False)  # the same step, told "rang 2 times"
        return space, root, once, twice, merged_before

    space, root, once, twice, merged_before = asyncio.run(go())
    assert merged_before
    assert space.situations.message_keyed
    assert once.twin is None and twice.twin is None and len({root.key, once.key, twice.key}) == 3 and space.merged == 0


def _start(actions: tuple[str, ...] = ("right", "left", "coin")) -> dict[str, Any]:
    return {"task": "walk", "pos": 0, "score": 0.0, "observation": "at 0", "actions": list(actions), "history": [], "done": False,
            "reward": None}


_STEP = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}


def _grid_graph(policy: Any) -> Any:
    """An open grid, 8 turns (counted in the history)."""

    def env(state: dict[str, Any]) -> dict[str, Any]:
        (x, y), (dx, dy) = state["pos"], _STEP[state["action"]]
        pos = (x + dx, y + dy)
        done = len(state.get("history") or []) + 1 >= 8
        return {"pos": pos, "observation": f"at {pos}", "done": done, "reward": 0.0 if done else None,
                "actions": list(_STEP), "history": [{"action": state["action"]}]}

    return policy_env_graph(MazeState, policy, env)


def test_a_rollout_turns_away_from_a_state_it_has_walked_through_a_transposition():
    # the rollout goes (-1,0) -> (-1,1) -> (0,1), a transposition of a node of another branch, whose
    # own path never held (-1,1); going west there would walk back into this rollout
    moves = {(-1, 0): "north", (-1, 1): "east", (0, 1): "west"}
    graph = _grid_graph(lambda s: {"action": moves.get(tuple(s["pos"]), "east")})
    start = {"task": "grid", "pos": (0, 0), "observation": "at (0, 0)", "actions": list(_STEP), "history": [], "done": False,
             "reward": None}

    async def go():
        space = _space(graph, calls=40)
        root = await space.root(start)
        w = await space.expand(root, {"action": "west"})
        z = await space.expand(w, {"action": "north"})  # (-1,1), first reached here
        x = await space.expand(root, {"action": "north"})  # (0,1)
        y = await space.expand(x, {"action": "west"})  # (-1,1) again: a transposition of z
        end = await space.rollout(w)
        return space, z, x, y, end

    space, z, x, y, end = asyncio.run(go())
    assert y.twin is z
    assert space.diverted >= 1 and space.reused == 1  # at (0,1) it turned away from y; only z was walked again


def test_a_rollout_that_comes_back_to_its_own_states_still_ends_within_the_horizon():
    task, graph = _maze()
    move = task.admissible(task.start)[0]
    back = _back(move)

    def ping_pong(state: dict[str, Any]) -> dict[str, Any]:  # there and back again, forever
        return {"action": move if tuple(state["pos"]) == task.start else back}

    graph, _ = task.make_graph(ping_pong)

    async def go():
        space = _space(graph, calls=10 * task.horizon)
        root = await space.root(task.input)
        end = await space.rollout(root)
        return space, end

    space, end = asyncio.run(go())
    assert end.terminal and end.state["turn"] == task.horizon
    assert space.meter.spent.policy_calls <= task.horizon
