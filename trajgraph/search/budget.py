"""Budgets: every optimizer stops at policy calls, tokens, wall time or env steps,
whichever comes first, and reports what it spent. Counted once, in the search
space, never inside an optimizer."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from trajgraph.errors import BudgetError


class BudgetExhausted(Exception):
    """Raised by the search space when a limit is reached; the driver catches it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


LIMITS = ("policy_calls", "tokens", "wall_time_s", "env_steps")  # the resources a Budget can cap


@dataclass(frozen=True)
class Budget:
    """Limits for one search. `None` means no limit on that resource.

    `finish=True`: if the budget runs out before any trajectory finished, the best
    partial one is completed greedily (reported as `overrun_policy_calls`), so an
    optimized agent used as a node always returns a finished state.
    """

    policy_calls: int | None = 64
    tokens: int | None = None
    wall_time_s: float | None = None
    env_steps: int | None = None
    finish: bool = True

    @property
    def limited(self) -> bool:
        """Whether anything stops a search that would otherwise go on (MCTS, BestOfN(n=None))."""
        return any(getattr(self, f) is not None for f in LIMITS)

    def __post_init__(self) -> None:
        for name in LIMITS:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise BudgetError(f"Budget({name}={value}) allows no work; use a positive number or None")


@dataclass
class Spent:
    policy_calls: int = 0
    tokens: int = 0
    env_steps: int = 0
    wall_time_s: float = 0.0
    overrun_policy_calls: int = 0
    stopped_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BudgetMeter:
    """Thread-safe counter of what a search has spent against its budget."""

    budget: Budget
    spent: Spent = field(default_factory=Spent)
    started: float = field(default_factory=time.perf_counter)
    unlimited: bool = False  # set while finishing a trajectory past the budget
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        reason = self.exhausted()
        if reason is not None:
            self.spent.stopped_by = self.spent.stopped_by or reason
            raise BudgetExhausted(reason)

    def exhausted(self) -> str | None:
        if self.unlimited:
            return None
        b, s = self.budget, self.spent
        if b.policy_calls is not None and s.policy_calls >= b.policy_calls:
            return "policy_calls"
        if b.tokens is not None and s.tokens >= b.tokens:
            return "tokens"
        if b.env_steps is not None and s.env_steps >= b.env_steps:
            return "env_steps"
        if b.wall_time_s is not None and time.perf_counter() - self.started >= b.wall_time_s:
            return "wall_time_s"
        return None

    def reserve_calls(self, k: int) -> int:
        """Claim up to k policy calls; returns how many may be made (>= 1) or raises."""
        with self._lock:
            self.check()
            if self.unlimited:
                self.spent.overrun_policy_calls += k
                self.spent.policy_calls += k
                return k
            left = None if self.budget.policy_calls is None else self.budget.policy_calls - self.spent.policy_calls
            n = k if left is None else max(1, min(k, left))
            self.spent.policy_calls += n
            return n

    def add_tokens(self, n: int) -> None:
        with self._lock:
            self.spent.tokens += n

    def add_env_steps(self, n: int) -> None:
        with self._lock:
            self.spent.env_steps += n

    def report(self) -> Spent:
        self.spent.wall_time_s = time.perf_counter() - self.started
        return self.spent


__all__ = ["Budget", "BudgetExhausted", "BudgetMeter", "Spent"]
