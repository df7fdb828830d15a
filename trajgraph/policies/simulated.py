"""A noisy walkthrough oracle: a policy of known, adjustable skill for controlled experiments.

With probability `skill` it plays the oracle's action, otherwise a uniformly random
*other* admissible action, so its per-step accuracy is exactly `skill` (whenever
there is another action to take). It is not a model: its `name` says "simulated"
so every table and store row that mentions it says so too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from trajgraph.errors import ConfigError

from .prompt import PolicyStats, admissible, resolve


class SimulatedPolicy:
    """`SimulatedPolicy(skill=0.6, oracle=lambda state: walkthrough[len(state["history"])])`."""

    def __init__(self, skill: float, oracle: Callable[[Mapping[str, Any]], str], seed: int | None = 0) -> None:
        if not 0.0 <= skill <= 1.0:
            raise ConfigError(f"SimulatedPolicy skill must be in [0, 1], got {skill!r}")
        self.skill = float(skill)
        self.oracle = oracle
        self.rng = random.Random(seed)
        self.name = f"simulated(skill={skill:g})"
        self.stats = PolicyStats()

    def _one(self, state: Mapping[str, Any], best: str, commands: list[str]) -> str:
        others = [c for c in commands if c != best]
        if not others or self.rng.random() < self.skill:
            return best
        return self.rng.choice(others)

    def _best(self, state: Mapping[str, Any], commands: list[str]) -> str:
        # An oracle that says something not admissible (case, spacing, a stale walkthrough)
        # is mapped like a model's reply, and counted.
        return resolve(str(self.oracle(state)), commands, self.stats, self.rng)

    def __call__(self, state: Mapping[str, Any]) -> dict[str, str]:
        commands = admissible(state)
        self.stats.calls += 1
        self.stats.samples += 1
        return {"action": self._one(state, self._best(state, commands), commands)}

    async def propose(self, state: Mapping[str, Any], k: int) -> list[dict[str, str]]:
        """k independent draws (with replacement), one oracle call."""
        commands = admissible(state)
        best = self._best(state, commands)
        self.stats.calls += 1
        self.stats.samples += k
        return [{"action": self._one(state, best, commands)} for _ in range(k)]

    def __repr__(self) -> str:
        return self.name
