"""The deceptive chain as a task suite (`trajgraph bench --suite chain`) and its noisy oracle policy.

The environment is `trajgraph.testing.chain`. `ChainTask` speaks the task contract
of `trajgraph.envloop.task` (the `Task` protocol) with the chain's solution kept
for `NoisyOracle`, a simulated policy that takes the trap as well as wrong doors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trajgraph.envloop import EnvState, env_loop_graph
from trajgraph.testing.chain import chain_env_node, chain_solution, chain_start, noisy_chain_policy


@dataclass(frozen=True)
class ChainTask:
    """One chain (a `Task`): its solution is kept for the oracle and `NoisyOracle`."""

    id: str
    input: dict
    decision_node: str
    solution: tuple[str, ...]
    max_steps: int
    optimum: float = 1.0

    def make_graph(self, policy_node: Callable[[EnvState], dict[str, Any]]) -> tuple[Any, None]:
        g = env_loop_graph(chain_env_node(self.solution), policy_node, "deceptive_chain")
        return g.compile(name="deceptive_chain"), None

    @staticmethod
    def outcome(state: dict[str, Any]) -> float | None:
        value = state.get("reward")
        return float(value) if isinstance(value, (int, float)) else None

    def oracle(self, state: dict[str, Any]) -> str:
        return self.solution[state.get("pos", 0)]

    def simulated_policy(self, skill: float, seed: int) -> NoisyOracle:
        """The chain's own noisy oracle (its trap is part of the task), for `--policy simulated`."""
        return NoisyOracle(self, skill=skill, seed=seed)


class ChainSuite:
    """Deceptive chains by seed; `train` and `test` splits use disjoint seeds."""

    name = "chain"

    def __init__(self, depth: int = 5) -> None:
        self.depth = depth

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> list[ChainTask]:
        offset = 0 if split == "train" else 10_000
        out = []
        for i in range(n):
            s = offset + seed * 1000 + i
            out.append(ChainTask(id=f"chain-{split}-{s}", input=dict(chain_start(f"chain-{s}")), decision_node="policy",
                                 solution=tuple(chain_solution(s, self.depth)), max_steps=self.depth))
        return out


class NoisyOracle:
    """Decision node for chain tasks: the oracle's door with probability `skill`."""

    def __init__(self, task: ChainTask, skill: float = 0.6, trap: float = 0.25, seed: int = 0) -> None:
        self.node = noisy_chain_policy(task.solution, skill, trap, seed)
        self.name = f"simulated(skill={skill})"

    def __call__(self, state: EnvState) -> dict[str, Any]:
        return self.node(state)


__all__ = ["ChainTask", "ChainSuite", "NoisyOracle"]
