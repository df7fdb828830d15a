"""The named policies of `--policy NAME` (entry-point group `trajgraph.policies`).

Each factory takes `seed` and `skill` and returns `for_task(task) -> decision node`: one
shared model serves every task (`view()` gives each search its own seeds over it). A
package of a user's own can register more names in the same group.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from trajgraph.errors import ConfigError

from .minilm_ranker import minilm_policy
from .simulated import SimulatedPolicy
from .smollm_policy import smollm2_policy

ForTask = Callable[[Any], Any]


def simulated(*, seed: int = 0, skill: float = 0.6) -> ForTask:
    """A noisy walkthrough oracle per task (the task's own `simulated_policy` when it has one)."""

    def for_task(task: Any) -> Any:
        task_seed = seed + zlib.crc32(task.id.encode())
        own = getattr(task, "simulated_policy", None)
        if own is not None:
            return own(skill, task_seed)
        if getattr(task, "oracle", None) is None:
            raise ConfigError(f"task {task.id} has no oracle; the simulated policy needs one")
        return SimulatedPolicy(skill=skill, oracle=task.oracle, seed=task_seed)

    for_task.label = f"simulated(skill={skill}) — a noisy oracle, not a model"  # type: ignore[attr-defined]
    return for_task


def _shared(policy: Any, label: str) -> ForTask:
    def for_task(task: Any) -> Any:
        return policy.view()

    for_task.policy = policy  # type: ignore[attr-defined]
    for_task.label = label  # type: ignore[attr-defined]
    return for_task


def minilm(*, seed: int = 0, skill: float = 0.6) -> ForTask:
    """The MiniLM-L6 encoder ranking admissible commands."""
    return _shared(minilm_policy(seed=seed), "minilm (MiniLM-L6 encoder ranking admissible commands)")


def smollm2_generate(*, seed: int = 0, skill: float = 0.6) -> ForTask:
    """SmolLM2-135M-Instruct writing a command."""
    return _shared(smollm2_policy(mode="generate", seed=seed), "smollm2-135m-instruct (generate)")


def smollm2_rank(*, seed: int = 0, skill: float = 0.6) -> ForTask:
    """SmolLM2-135M-Instruct ranking admissible commands by log-probability."""
    return _shared(smollm2_policy(mode="rank", seed=seed), "smollm2-135m-instruct (rank)")
