"""The exact model behind a toy-text task: gym's transition table as arrays, solved by value iteration.

Kept apart from gym_toytext.py (observation text, the env-loop graph, tasks and
suites) because this is the ground truth the tests and benchmarks compare a
search against: a deterministic tabular MDP read once from `env.unwrapped.P`,
and its finite-horizon optimum, exact because nothing is stochastic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from trajgraph.errors import ConfigError

try:
    import gymnasium as gym
    import numpy as np
    from gymnasium.envs.toy_text.taxi import TaxiEnv
except ImportError as e:  # the optional extra
    raise ConfigError("gym toy-text tasks need gymnasium: pip install 'trajgraph[gym]'") from e

FROZENLAKE_ACTIONS = ("left", "down", "right", "up")  # gym ids 0..3
CLIFF_ACTIONS = ("up", "right", "down", "left")  # gym ids 0..3
TAXI_ACTIONS = ("south", "north", "east", "west", "pickup", "dropoff")  # gym ids 0..5


@dataclass(frozen=True, eq=False)
class ToyMDP:
    """A deterministic tabular MDP read from a gym toy-text env (arrays are [S, A])."""

    kind: str  # "frozenlake" | "cliffwalking" | "taxi"
    actions: tuple[str, ...]
    next: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    goal: np.ndarray  # terminal transitions that reach the goal (FrozenLake holes are not)
    bonus: float  # B in cost = B - return
    desc: tuple[str, ...]  # map rows (FrozenLake, Taxi) or () (CliffWalking)


def _tables(env: Any, kind: str, actions: tuple[str, ...], bonus: float, desc: tuple[str, ...]) -> ToyMDP:
    P = env.unwrapped.P
    n_s, n_a = len(P), len(actions)
    nxt, rew = np.zeros((n_s, n_a), dtype=np.int64), np.zeros((n_s, n_a))
    term = np.zeros((n_s, n_a), dtype=bool)
    for s in range(n_s):
        for a in range(n_a):
            outcomes = P[s][a]
            if len(outcomes) != 1:
                raise ConfigError(f"{kind}: state {s} action {a} is stochastic; only deterministic variants are supported")
            _, s2, r, t = outcomes[0]
            nxt[s, a], rew[s, a], term[s, a] = int(s2), float(r), bool(t)
    goal = term & (rew > 0) if kind == "frozenlake" else term.copy()
    return ToyMDP(kind, actions, nxt, rew, term, goal, bonus, desc)


@lru_cache(maxsize=256)
def frozenlake_mdp(desc: tuple[str, ...]) -> ToyMDP:
    env = gym.make("FrozenLake-v1", desc=list(desc), is_slippery=False)
    return _tables(env, "frozenlake", FROZENLAKE_ACTIONS, 0.0, desc)


@lru_cache(maxsize=1)
def cliffwalking_mdp() -> ToyMDP:
    return _tables(gym.make("CliffWalking-v1"), "cliffwalking", CLIFF_ACTIONS, 0.0, ())


@lru_cache(maxsize=1)
def taxi_mdp() -> ToyMDP:
    env = gym.make("Taxi-v4")
    taxi = env.unwrapped
    assert isinstance(taxi, TaxiEnv)  # what Taxi-v4 registers; the map rows live on it
    desc = tuple(b"".join(row).decode() for row in taxi.desc)
    return _tables(env, "taxi", TAXI_ACTIONS, 21.0, desc)


@dataclass(frozen=True, eq=False)
class Solution:
    """Finite-horizon value iteration (undiscounted, exact for deterministic tables).

    values[h, s]: best raw return-to-go with h steps left.
    goal_values[h, s]: best raw return-to-go among episodes that reach the goal within
    h steps (-inf if none does); the oracle maximises it, which maximises the outcome.
    """

    mdp: ToyMDP
    start: int
    horizon: int
    values: np.ndarray
    goal_values: np.ndarray
    prefer: np.ndarray  # goal_values with a 1e-6 cost per step: among equal returns, the shortest

    @property
    def optimal_return(self) -> float:
        return float(self.values[self.horizon, self.start])

    @property
    def optimum(self) -> float:
        """Best outcome: 1.0 when the goal is reachable within the horizon, else 0.0."""
        return 1.0 if np.isfinite(self.goal_values[self.horizon, self.start]) else 0.0

    def best_action(self, s: int, steps_left: int) -> str:
        h = max(1, min(steps_left, self.horizon))
        m = self.mdp
        q_goal = m.reward[s] + np.where(m.goal[s], 0.0, np.where(m.terminal[s], -np.inf, self.prefer[h - 1, m.next[s]]))
        if np.isfinite(q_goal).any():
            return m.actions[int(np.argmax(q_goal))]
        q = m.reward[s] + np.where(m.terminal[s], 0.0, self.values[h - 1, m.next[s]])
        return m.actions[int(np.argmax(q))]


def solve(mdp: ToyMDP, start: int, horizon: int) -> Solution:
    """Backward induction over h = 1..horizon steps left, from `start`."""
    n_s = mdp.next.shape[0]
    values = np.zeros((horizon + 1, n_s))
    goal_values, prefer = np.full((horizon + 1, n_s), -np.inf), np.full((horizon + 1, n_s), -np.inf)
    not_goal_terminal = np.where(mdp.terminal & ~mdp.goal, -np.inf, 0.0)
    for h in range(1, horizon + 1):
        values[h] = (mdp.reward + np.where(mdp.terminal, 0.0, values[h - 1][mdp.next])).max(axis=1)
        # returns are integers, so a 1e-6 step cost (at most 1e-6 * horizon) only breaks ties
        for table, step_cost in ((goal_values, 0.0), (prefer, 1e-6)):
            ahead = np.where(mdp.goal, 0.0, not_goal_terminal + table[h - 1][mdp.next])
            table[h] = (mdp.reward - step_cost + ahead).max(axis=1)
    return Solution(mdp, start, horizon, values, goal_values, prefer)


__all__ = ["FROZENLAKE_ACTIONS", "CLIFF_ACTIONS", "TAXI_ACTIONS", "ToyMDP", "Solution", "solve", "frozenlake_mdp",
           "cliffwalking_mdp", "taxi_mdp"]
