"""gymnasium toy-text environments (FrozenLake, CliffWalking, Taxi-v4) as env-loop tasks.

The fast tier of the benchmark: a step is a table lookup, and the exact optimum is
known by value iteration (adapters/_toytext_mdp.py), so tests can assert that a
search reaches it.

The whole environment lives in the graph state: `pos` holds the discrete gym state,
transitions come from `env.unwrapped.P`, so LangGraph checkpoints fork an episode
(`make_graph` returns env=None). Only deterministic variants are used
(FrozenLake `is_slippery=False`, CliffWalking-v1, Taxi-v4 without rain/fickle
passenger), so a state and an action prefix determine everything.

Rewards. `score` in the state is the raw gym return so far; `reward` (set when done)
is the outcome, normalised so that 1.0 is the best achievable within `max_steps`:

- FrozenLake: 1.0 if the goal is reached, else 0.0 (the raw return).
- CliffWalking, Taxi: 0.0 if the goal is not reached (step limit), else
  cost* / cost, where cost = B - return (B = 0 for CliffWalking, 21 for Taxi, so
  cost counts steps plus penalties: 100 per cliff fall, 10 per illegal pickup or
  dropoff) and cost* is the least cost of any goal-reaching episode. An optimal
  episode scores 1.0, one twice as costly 0.5. `optimal_return(task)` gives the
  raw optimum (e.g. -13 on the standard CliffWalking) for tests that want it.

An action that is not one of the admissible words is a no-op that still uses a step
(like a text game answering "I don't understand").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from trajgraph.adapters._toytext_mdp import (  # noqa: F401 (the action tuples are re-exported)
    CLIFF_ACTIONS,
    FROZENLAKE_ACTIONS,
    TAXI_ACTIONS,
    Solution,
    ToyMDP,
    cliffwalking_mdp,
    frozenlake_mdp,
    solve,
    taxi_mdp,
)
from trajgraph.envloop import env_loop
from trajgraph.envloop.task import TaskSpec, sample_pool, seed_pool, split_pool
from trajgraph.errors import ConfigError

try:
    import gymnasium as gym
except ImportError as e:  # the optional extra
    raise ConfigError("gym toy-text tasks need gymnasium: pip install 'trajgraph[gym]'") from e

_DELTAS = {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}
_TAXI_NAMES = ("R", "G", "Y", "B")


def value_iteration(task: TaskSpec) -> Solution:
    """The exact solution of a toy-text task: `.optimal_return`, `.optimum`, `.best_action(s, steps_left)`."""
    if not isinstance(task.make_graph, ToyTextGraph):
        raise ConfigError(f"task {task.id!r} is not a gym toy-text task")
    return task.make_graph.solution


def optimal_return(task: TaskSpec) -> float:
    """Best raw gym return reachable within the task's max_steps (e.g. -13.0 on standard CliffWalking)."""
    return value_iteration(task).optimal_return


# -- text ----------------------------------------------------------------------------


def _cell_word(mdp: ToyMDP, r: int, c: int) -> str:
    if mdp.kind == "frozenlake":
        if not (0 <= r < len(mdp.desc) and 0 <= c < len(mdp.desc[0])):
            return "the edge of the lake"
        return {"S": "the start", "F": "frozen ice", "H": "a hole", "G": "the goal"}[mdp.desc[r][c]]
    if not (0 <= r < 4 and 0 <= c < 12):
        return "the edge of the grid"
    if r == 3 and 1 <= c <= 10:
        return "the cliff"
    return "the goal" if (r, c) == (3, 11) else "open ground"


def _grid_view(mdp: ToyMDP, s: int) -> str:
    ncol = len(mdp.desc[0]) if mdp.kind == "frozenlake" else 12
    r, c = divmod(s, ncol)
    around = "; ".join(f"{a}: {_cell_word(mdp, r + _DELTAS[a][0], c + _DELTAS[a][1])}" for a in ("left", "down", "right", "up"))
    return f"You are at row {r}, col {c}. Around you, {around}."


def _taxi_parts(s: int) -> tuple[int, int, int, int]:
    s, dest = divmod(s, 4)
    s, pas = divmod(s, 5)
    row, col = divmod(s, 5)
    return row, col, pas, dest


_TAXI_LOCS = ((0, 0), (0, 4), (4, 0), (4, 3))


def _taxi_view(mdp: ToyMDP, s: int) -> str:
    row, col, pas, dest = _taxi_parts(s)
    if pas == dest:
        return f"The taxi is at row {row}, col {col}. The passenger has arrived at {_TAXI_NAMES[dest]}."
    where = "in the taxi" if pas == 4 else f"waiting at {_TAXI_NAMES[pas]} (row {_TAXI_LOCS[pas][0]}, col {_TAXI_LOCS[pas][1]})"
    blocked = [a for a in ("south", "north", "east", "west") if mdp.next[s, TAXI_ACTIONS.index(a)] == s]
    walls = f" Blocked: {', '.join(blocked)}." if blocked else ""
    d = _TAXI_LOCS[dest]
    return f"The taxi is at row {row}, col {col}. The passenger is {where}. The destination is {_TAXI_NAMES[dest]} (row {d[0]}, col {d[1]}).{walls}"


def describe(mdp: ToyMDP, s: int) -> str:
    """The observation text of state s."""
    return _taxi_view(mdp, s) if mdp.kind == "taxi" else _grid_view(mdp, s)


def _feedback(mdp: ToyMDP, s: int, a: int, s2: int, r: float, t: bool) -> str:
    """What happened on this step, before the new view."""
    name = mdp.actions[a]
    if mdp.kind == "frozenlake":
        if t:
            return "You reach the goal!" if r > 0 else "You fall into a hole. The episode is over."
        return f"You cannot go {name}: the edge of the lake." if s2 == s else f"You go {name}."
    if mdp.kind == "cliffwalking":
        if r <= -100:
            return "You step off the cliff (-100) and are carried back to the start."
        if t:
            return "You reach the goal!"
        return f"You cannot go {name}: the edge of the grid." if s2 == s else f"You go {name}."
    if name in ("pickup", "dropoff"):
        if r <= -10:
            return f"Illegal {name} (-10)."
        if t:
            return "You drop the passenger off at the destination (+20)."
        return "You pick up the passenger." if name == "pickup" else "You drop the passenger off, but not at the destination."
    return f"A wall blocks the way {name}." if s2 == s else f"You drive {name}."


def _task_text(mdp: ToyMDP) -> str:
    acts = ", ".join(mdp.actions)
    if mdp.kind == "frozenlake":
        n = len(mdp.desc)
        grid = "\n".join(mdp.desc)
        return (f"Walk across a frozen lake from the start S (row 0, col 0) to the goal G (row {n - 1}, col {n - 1}) "
                f"without falling into a hole H. Map (row 0 at the top, F is frozen ice):\n{grid}\nActions: {acts}.")
    if mdp.kind == "cliffwalking":
        return ("Walk on a 4x12 grid to the goal at row 3, col 11 in as few steps as possible. The cliff runs along "
                "row 3 from col 1 to col 10: stepping into it costs 100 and sends you back to row 3, col 0. "
                f"Each step costs 1. Actions: {acts}.")
    grid = "\n".join(mdp.desc)
    return ("Drive the taxi to the passenger, pick them up, and drop them off at their destination in as few moves "
            "as possible. Map (| is a wall; R, G, Y, B are the pick-up and drop-off points; row 0 at the top):\n"
            f"{grid}\nEach move costs 1, an illegal pickup or dropoff 10. Actions: {acts}.")


# -- the graph -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ToyTextGraph:
    """`make_graph` of a toy-text task: policy node -> (compiled env loop, None)."""

    mdp: ToyMDP
    solution: Solution
    max_steps: int
    name: str

    def outcome_of(self, ret: float, reached: bool) -> float:
        if not reached:
            return 0.0
        if self.mdp.kind == "frozenlake":
            return 1.0
        best_cost = self.mdp.bonus - float(self.solution.goal_values[self.max_steps, self.solution.start])
        return min(1.0, best_cost / (self.mdp.bonus - ret))

    def env_node(self, state: dict[str, Any]) -> dict[str, Any]:
        mdp, s, action = self.mdp, int(state["pos"]), state.get("action")
        steps = len(state.get("history") or []) + 1
        score = float(state.get("score") or 0.0)
        if action in mdp.actions:
            a = mdp.actions.index(action)
            s2, r, t = int(mdp.next[s, a]), float(mdp.reward[s, a]), bool(mdp.terminal[s, a])
            reached = bool(mdp.goal[s, a])
            text = _feedback(mdp, s, a, s2, r, t)
        else:
            s2, r, t, reached = s, 0.0, False, False
            text = f"{action!r} is not an action here; choose one of: {', '.join(mdp.actions)}."
        score += r
        done = t or steps >= self.max_steps
        obs = f"{text} {describe(mdp, s2)}"
        if done and not t:
            obs += f" The step limit ({self.max_steps}) is reached."
        reward = self.outcome_of(score, reached) if done else None
        return {"pos": s2, "observation": obs, "actions": [] if done else list(mdp.actions), "score": score,
                "done": done, "reward": reward, "history": [{"action": action, "observation": obs, "reward": r}]}

    def __call__(self, policy_node: Any) -> tuple[Any, None]:
        return env_loop(self.env_node, policy_node, name=self.name), None


def _outcome(state: dict) -> float | None:
    return state.get("reward") if state.get("done") else None


def _shortest_steps(mdp: ToyMDP, start: int) -> int:
    """Fewest steps from start to a goal transition (BFS over the deterministic table)."""
    seen, queue = {start}, deque([(start, 0)])
    while queue:
        s, d = queue.popleft()
        for a in range(len(mdp.actions)):
            if mdp.goal[s, a]:
                return d + 1
            s2 = int(mdp.next[s, a])
            if not mdp.terminal[s, a] and s2 not in seen:
                seen.add(s2)
                queue.append((s2, d + 1))
    raise ConfigError(f"{mdp.kind}: the goal cannot be reached from state {start}")


def _make_task(task_id: str, mdp: ToyMDP, start: int, max_steps: int) -> TaskSpec:
    solution = solve(mdp, start, max_steps)
    factory = ToyTextGraph(mdp, solution, max_steps, task_id)

    def oracle(state: dict) -> str:
        return solution.best_action(int(state["pos"]), max_steps - len(state.get("history") or []))

    return TaskSpec(
        id=task_id,
        input={"task": _task_text(mdp), "observation": describe(mdp, start), "actions": list(mdp.actions), "action": None,
               "history": [], "score": 0.0, "reward": None, "done": False, "pos": start},
        decision_node="policy",
        make_graph=factory,
        outcome=_outcome,
        max_steps=max_steps,
        optimum=solution.optimum,
        oracle=oracle,
    )


def frozenlake_task(size: int = 4, seed: int | None = None, max_steps: int | None = None, p: float = 0.8) -> TaskSpec:
    """FrozenLake (deterministic): the standard 4x4/8x8 map when seed is None, else a map generated by seed."""
    if seed is None:
        if size not in (4, 8):
            raise ConfigError(f"FrozenLake size {size}: the standard maps are 4 and 8; pass a seed for a generated map")
        from gymnasium.envs.toy_text.frozen_lake import MAPS

        desc, task_id = tuple(MAPS[f"{size}x{size}"]), f"frozenlake-{size}x{size}"
    else:
        from gymnasium.envs.toy_text.frozen_lake import generate_random_map

        desc, task_id = tuple(generate_random_map(size=size, p=p, seed=seed)), f"frozenlake-{size}x{size}-s{seed}"
    mdp = frozenlake_mdp(desc)
    return _make_task(task_id, mdp, 0, max_steps or max(4 * size, 2 * _shortest_steps(mdp, 0)))


def cliffwalking_task(start: tuple[int, int] = (3, 0), max_steps: int = 50) -> TaskSpec:
    """CliffWalking-v1 from a start cell (the standard start is row 3, col 0)."""
    r, c = start
    if not (0 <= r < 4 and 0 <= c < 12) or (r == 3 and c >= 1):
        raise ConfigError(f"CliffWalking start {start}: pick a cell off the cliff and the goal")
    task_id = "cliffwalking" if start == (3, 0) else f"cliffwalking-r{r}c{c}"
    return _make_task(task_id, cliffwalking_mdp(), r * 12 + c, max_steps)


def taxi_task(state: int | None = None, seed: int | None = None, max_steps: int = 50) -> TaskSpec:
    """Taxi-v4 from a start state (a gym state id, or the one `reset(seed=seed)` draws)."""
    if state is None:
        state = int(gym.make("Taxi-v4").reset(seed=seed or 0)[0])
    row, col, pas, dest = _taxi_parts(state)
    if pas == 4 or pas == dest:
        raise ConfigError(f"Taxi state {state}: the passenger must wait at a pick-up point other than the destination")
    return _make_task(f"taxi-r{row}c{col}-{_TAXI_NAMES[pas]}{_TAXI_NAMES[dest]}", taxi_mdp(), state, max_steps)


# -- suites ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrozenLakeSuite:
    """Generated FrozenLake maps; test seeds [0, 1e6), train seeds [1e6, 2e6)."""

    size: int = 4
    p: float = 0.8
    name: str = "frozenlake"

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> list[TaskSpec]:
        return [frozenlake_task(self.size, seed=s, p=self.p) for s in seed_pool(split, n, seed)]


@dataclass(frozen=True)
class CliffWalkingSuite:
    """CliffWalking from the 37 start cells off the cliff, split in halves."""

    max_steps: int = 50
    name: str = "cliffwalking"

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> list[TaskSpec]:
        cells = [(r, c) for r in range(4) for c in range(12) if not (r == 3 and c >= 1)]
        return [cliffwalking_task(cell, self.max_steps) for cell in sample_pool(split_pool(cells, split), n, seed)]


@dataclass(frozen=True)
class TaxiSuite:
    """Taxi-v4 from its 300 start states, split in halves."""

    max_steps: int = 50
    name: str = "taxi"

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> list[TaskSpec]:
        starts = [s for s in range(500) if _taxi_parts(s)[2] < 4 and _taxi_parts(s)[2] != _taxi_parts(s)[3]]
        return [taxi_task(state=s, max_steps=self.max_steps) for s in sample_pool(split_pool(starts, split), n, seed)]


__all__ = [
    "ToyMDP", "Solution", "ToyTextGraph", "solve", "value_iteration", "optimal_return", "describe",
    "frozenlake_task", "cliffwalking_task", "taxi_task", "FrozenLakeSuite", "CliffWalkingSuite", "TaxiSuite",
    "frozenlake_mdp", "cliffwalking_mdp", "taxi_mdp",
]
