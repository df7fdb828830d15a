"""Generated tasks whose optimum is known exactly: keys, traps, dead ends and partial credit.

A task is a small grid maze played through a plain LangGraph environment loop
(decision node "policy", then "env"; state keys task, observation, actions,
history, reward, done, plus pos, key, turn, score). The agent must fetch a key,
then reach the door; a trap ends the episode at once with a tempting 0.3; a pit
ends it with nothing; walls make cul-de-sacs (dead ends that waste the horizon).
An unfinished episode (trap, pit or horizon) earns partial credit that rises as
the agent gets closer to its next target, so `score` (the running partial credit)
is a partial outcome the search may read before the end.

The optimum is computed, not assumed: `optimum(task)` enumerates every state
(cell, key held, turn) by dynamic programming over the same step function the
graph runs, so it is exact for any layout. `biased_node` is the agent's own
decision node: it samples the optimal move with probability `skill`, a lure
(toward a trap, or straight for the door without the key) with probability
`bias`, and any other admissible move otherwise.

Kept in the test kit (no adapters, no graphs) so the core's tests and the
benchmark share one generator: `KeyMazeSuite().tasks("test", 20, seed=0)`.
"""

from __future__ import annotations

import functools
import operator
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict, cast

from langgraph.graph import END, START, StateGraph

MOVES: dict[str, tuple[int, int]] = {"north": (0, -1), "south": (0, 1), "west": (-1, 0), "east": (1, 0)}
TRAP_CREDIT = 0.3
Cell = tuple[int, int]


class MazeState(TypedDict, total=False):
    task: str
    observation: str
    actions: list[str]
    action: str | None
    history: Annotated[list, operator.add]
    reward: float | None
    done: bool
    pos: Cell
    key: bool
    turn: int
    score: float


@dataclass(frozen=True)
class KeyMaze:
    """One generated task (duck-types the bench's task contract)."""

    id: str
    width: int
    height: int
    start: Cell
    key_cell: Cell
    door: Cell
    walls: frozenset[Cell]
    traps: frozenset[Cell]
    pits: frozenset[Cell]
    horizon: int
    decision_node: str = "policy"
    max_steps: int = 0
    _dist: dict[Cell, dict[Cell, int]] = field(default_factory=dict, compare=False, repr=False)

    # -- the environment --------------------------------------------------------------

    def admissible(self, pos: Cell) -> list[str]:
        return [a for a, (dx, dy) in MOVES.items() if self._open((pos[0] + dx, pos[1] + dy))]

    def step(self, pos: Cell, key: bool, turn: int, action: str) -> tuple[Cell, bool, int, bool, float]:
        """(pos, key, turn, done, credit) after `action`; credit is final when done."""
        dx, dy = MOVES.get(action, (0, 0))
        nxt = (pos[0] + dx, pos[1] + dy)
        pos = nxt if self._open(nxt) else pos
        key = key or pos == self.key_cell
        turn += 1
        if pos == self.door and key:
            return pos, key, turn, True, 1.0
        if pos in self.traps:
            return pos, key, turn, True, TRAP_CREDIT
        if pos in self.pits:
            return pos, key, turn, True, 0.0
        return pos, key, turn, turn >= self.horizon, self.credit(pos, key)

    def credit(self, pos: Cell, key: bool) -> float:
        """Partial credit: rises as the agent nears its next target (the key, then the door)."""
        far = max(self.distances(self.key_cell).values()) or 1
        if not key:
            return round(0.4 * (1 - self.distance(pos, self.key_cell) / far), 4)
        far = max(self.distances(self.door).values()) or 1
        return round(0.4 + 0.4 * (1 - self.distance(pos, self.door) / far), 4)

    def distances(self, target: Cell) -> dict[Cell, int]:
        """Shortest safe path lengths to `target` (traps and pits avoided)."""
        if target not in self._dist:
            out = {target: 0}
            queue = deque([target])
            while queue:
                cell = queue.popleft()
                for dx, dy in MOVES.values():
                    nxt = (cell[0] + dx, cell[1] + dy)
                    if self._open(nxt) and nxt not in out and nxt not in self.traps and nxt not in self.pits:
                        out[nxt] = out[cell] + 1
                        queue.append(nxt)
            self._dist[target] = out
        return self._dist[target]

    def distance(self, cell: Cell, target: Cell) -> int:
        return self.distances(target).get(cell, self.width * self.height)

    def _open(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.width and 0 <= cell[1] < self.height and cell not in self.walls

    # -- the task contract -----------------------------------------------------------

    @property
    def input(self) -> dict[str, Any]:
        return {"task": self.describe(), "observation": self.observe(self.start, False), "actions": self.admissible(self.start),
                "history": [], "done": False, "pos": self.start, "key": False, "turn": 0, "score": self.credit(self.start, False)}

    def describe(self) -> str:
        return f"Fetch the key, then open the door ({self.width}x{self.height} maze, {self.horizon} moves)."

    def observe(self, pos: Cell, key: bool) -> str:
        return f"at {pos}; {'holding the key' if key else 'no key'}; exits: {', '.join(self.admissible(pos))}"

    def env_node(self) -> Callable[[MazeState], dict[str, Any]]:
        def env(state: MazeState) -> dict[str, Any]:
            action = state.get("action") or ""
            pos, key, turn, done, credit = self.step(tuple(state["pos"]), bool(state.get("key")), int(state.get("turn", 0)), action)  # type: ignore[arg-type]
            obs = self.observe(pos, key)
            if done:
                obs += {1.0: "; the door opens", TRAP_CREDIT: "; a trap: a few coins, no way on"}.get(credit, "; the episode ends")
            return {"pos": pos, "key": key, "turn": turn, "score": credit, "done": done, "reward": credit if done else None,
                    "observation": obs, "actions": [] if done else self.admissible(pos),
                    "history": [{"action": action, "observation": obs, "reward": credit if done else None}]}

        return env

    def make_graph(self, policy_node: Callable[[Any], dict[str, Any]]) -> tuple[Any, None]:
        """The env loop: START -> policy -> env -> (policy | END); no environment outside the graph."""
        g: StateGraph[Any, Any, Any, Any] = StateGraph(MazeState)
        g.add_node("policy", cast(Any, policy_node))  # a plain (state) -> update function
        g.add_node("env", cast(Any, self.env_node()))
        g.add_edge(START, "policy")
        g.add_edge("policy", "env")
        g.add_conditional_edges("env", lambda s: END if s.get("done") else "policy", ["policy", END])
        return g.compile(name="key_maze"), None

    @staticmethod
    def outcome(state: dict[str, Any]) -> float | None:
        value = state.get("reward")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @staticmethod
    def partial(state: dict[str, Any]) -> float | None:
        """The partial outcome of an unfinished episode: its running partial credit."""
        value = state.get("score")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def oracle(self, state: dict[str, Any]) -> str:
        """An optimal move at `state` (by the exact value table)."""
        pos, key, turn = tuple(state["pos"]), bool(state.get("key")), int(state.get("turn", 0))
        return best_actions(self, pos, key, turn)[0]

    @property
    def optimum(self) -> float:
        return optimum(self)

    @property
    def solution_length(self) -> int:
        return self.distance(self.start, self.key_cell) + self.distance(self.key_cell, self.door)


def _values(task: KeyMaze) -> Callable[[Cell, bool, int], float]:
    @functools.cache
    def value(pos: Cell, key: bool, turn: int) -> float:
        return max(_q(task, value, pos, key, turn, a) for a in task.admissible(pos))

    return value


def _q(task: KeyMaze, value: Callable[[Cell, bool, int], float], pos: Cell, key: bool, turn: int, action: str) -> float:
    p, k, t, done, credit = task.step(pos, key, turn, action)
    return credit if done else value(p, k, t)


_TABLES: dict[str, Callable[[Cell, bool, int], float]] = {}


def _table(task: KeyMaze) -> Callable[[Cell, bool, int], float]:
    if task.id not in _TABLES:
        _TABLES[task.id] = _values(task)
    return _TABLES[task.id]


def optimum(task: KeyMaze) -> float:
    """The best final outcome any trajectory reaches: exact, by enumerating every (cell, key, turn)."""
    return _table(task)(task.start, False, 0)


def best_actions(task: KeyMaze, pos: Cell, key: bool, turn: int) -> list[str]:
    """The optimal moves at a state, shortest way first (ties broken toward the target)."""
    value = _table(task)
    qs = {a: _q(task, value, pos, key, turn, a) for a in task.admissible(pos)}
    top = max(qs.values())
    target = task.door if key else task.key_cell

    def after(a: str) -> int:
        dx, dy = MOVES[a]
        return task.distance((pos[0] + dx, pos[1] + dy), target)

    return sorted((a for a, q in qs.items() if q >= top - 1e-9), key=after)


def biased_node(task: KeyMaze, skill: float = 0.35, bias: float = 0.45, seed: int = 0) -> Callable[[Any], dict[str, Any]]:
    """The agent's own decision node: optimal with probability `skill`, a lure with `bias`
    (the move toward the nearest trap, or toward the door while the key is not held),
    any other admissible move otherwise. Each call draws afresh (a sampling agent)."""
    rng = random.Random(seed)

    def policy(state: dict[str, Any]) -> dict[str, Any]:
        pos, key, turn = tuple(state["pos"]), bool(state.get("key")), int(state.get("turn", 0))
        moves = task.admissible(pos)
        good = best_actions(task, pos, key, turn)[0]
        u = rng.random()
        if u < skill:
            return {"action": good}
        lure = _lure(task, pos, key, [m for m in moves if m != good])
        if u < skill + bias and lure is not None:
            return {"action": lure}
        return {"action": rng.choice(moves)}

    return policy


def _lure(task: KeyMaze, pos: Cell, key: bool, moves: list[str]) -> str | None:
    targets = list(task.traps) or ([task.door] if not key else [])
    if not moves or not targets:
        return moves[0] if moves else None

    def manhattan(a: str) -> int:
        dx, dy = MOVES[a]
        cell = (pos[0] + dx, pos[1] + dy)
        return min(abs(cell[0] - t[0]) + abs(cell[1] - t[1]) for t in targets)

    return min(moves, key=manhattan)


def generate(seed: int, width: int = 5, height: int = 4, traps: int = 2, pits: int = 1, slack: int = 4,
             min_length: int = 5, max_length: int = 9) -> KeyMaze:
    """A solvable maze (key then door, safe path of `min_length`..`max_length` moves); horizon = length + slack."""
    rng = random.Random(seed)
    cells = [(x, y) for x in range(width) for y in range(height)]
    for _ in range(10_000):
        start, key_cell, door, *rest = rng.sample(cells, 3 + traps + pits)
        walls = frozenset(c for c in cells if c not in (start, key_cell, door, *rest) and rng.random() < 0.2)
        maze = KeyMaze(id=f"keymaze-{seed}", width=width, height=height, start=start, key_cell=key_cell, door=door,
                       walls=walls, traps=frozenset(rest[:traps]), pits=frozenset(rest[traps:]), horizon=1)
        length = maze.solution_length
        if min_length <= length <= max_length:
            return KeyMaze(id=maze.id, width=width, height=height, start=start, key_cell=key_cell, door=door, walls=walls,
                           traps=maze.traps, pits=maze.pits, horizon=length + slack, max_steps=length + slack)
    raise ValueError(f"no solvable maze for seed {seed}")


class KeyMazeSuite:
    """Generated key mazes by seed; `train` and `test` use disjoint seeds."""

    name = "keymaze"

    def __init__(self, width: int = 5, height: int = 4) -> None:
        self.width, self.height = width, height

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> list[KeyMaze]:
        offset = 0 if split == "train" else 10_000
        return [generate(offset + seed * 1000 + i, self.width, self.height) for i in range(n)]


__all__ = ["KeyMaze", "KeyMazeSuite", "MazeState", "MOVES", "TRAP_CREDIT", "best_actions", "biased_node", "generate", "optimum"]
