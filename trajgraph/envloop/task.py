"""The task contract every environment adapter speaks, and that optimizers and `trajgraph bench` consume.

A `TaskSpec` is one task of a suite: the graph input, the name of the node that
chooses actions, how to build the agent graph around a given policy, how to read
the final reward of a finished state, and (when the adapter can compute them) the
best achievable reward and an oracle for the best next action.

Forking. `make_graph(policy)` returns `(compiled graph, env)`. `env` is None when
the graph state holds the whole environment (gym toy-text: checkpoints fork it);
otherwise it is an object with `snapshot() -> Any` and `restore(snap) -> None`
(TextWorld: the game engine lives outside the graph, and a search must restore the
engine to a decision point's snapshot before branching from it).

Every suite's tasks keep the `Task` protocol (what `TaskSpec` holds), so a
search or a benchmark runs any of them the same way.

Splits. `Suite.tasks(split, n, seed)` draws n tasks from the split with `seed`;
the "train" and "test" pools of a suite never share a task.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from trajgraph.errors import ConfigError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class TaskSpec:
    """One task: what to feed the graph, where it decides, and how it is scored.

    make_graph: env loops take a policy node `(state) -> {"action": str}`; ReAct
        suites take a LangChain chat model instead (the graph's decision node is
        the model call). Returns (compiled graph without checkpointer, env or None).
    outcome: final reward of a state, None while the episode is unfinished.
    optimum: the best final reward a policy can reach (None if unknown).
    oracle: the best next action from a state (for simulated policies and tests).
    """

    id: str
    input: dict
    decision_node: str
    make_graph: Callable[[Any], tuple[Any, Any]]
    outcome: Callable[[dict], float | None]
    max_steps: int
    optimum: float | None = None
    oracle: Callable[[dict], str] | None = None


class Task(Protocol):
    """The one contract every suite's tasks keep (TextWorld, toy-text, SQL: `TaskSpec`; the chain: `ChainTask`).

    A search or `trajgraph bench` needs nothing else: the input, the decision node,
    a graph built around a policy, the outcome of a finished state, a step bound
    and, when known, the best reward reachable. (An `oracle` is optional.)
    """

    @property
    def id(self) -> str: ...

    @property
    def input(self) -> dict: ...

    @property
    def decision_node(self) -> str: ...

    @property
    def max_steps(self) -> int: ...

    @property
    def optimum(self) -> float | None: ...

    def make_graph(self, policy: Any, /) -> tuple[Any, Any]: ...

    def outcome(self, state: dict, /) -> float | None: ...


class Suite(Protocol):
    """A family of tasks with disjoint train/test pools."""

    @property
    def name(self) -> str: ...  # read-only, so frozen dataclasses conform

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> Sequence[Task]: ...


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")


T = TypeVar("T")


def sample_pool(pool: Sequence[T], n: int, seed: int) -> list[T]:
    """n distinct items of a finite pool, drawn by seed (all of them, shuffled, if n >= len(pool))."""
    if n < 1:
        raise ConfigError(f"n={n}: ask for at least one task")
    return random.Random(seed).sample(list(pool), min(n, len(pool)))


def split_pool(items: Sequence[T], split: str) -> list[T]:
    """Deterministic half of a finite pool: 'test' gets even positions of a fixed shuffle, 'train' odd."""
    check_split(split)
    order = list(items)
    random.Random(20261126).shuffle(order)  # fixed: the split must never change between versions
    return order[0::2] if split == "test" else order[1::2]


def seed_pool(split: str, n: int, seed: int) -> list[int]:
    """n distinct generator seeds: test seeds lie in [0, 10**6), train seeds in [10**6, 2*10**6)."""
    check_split(split)
    if n < 1:
        raise ConfigError(f"n={n}: ask for at least one task")
    base = 0 if split == "test" else 1_000_000
    return [base + s for s in random.Random(seed).sample(range(1_000_000), n)] if seed else [base + i for i in range(n)]


__all__ = ["TaskSpec", "Task", "Suite", "SPLITS", "check_split", "sample_pool", "split_pool", "seed_pool"]
