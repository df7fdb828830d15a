"""Budgets: every optimizer stops at policy calls, tokens, wall time or env steps,
whichever comes first, and reports what it spent. Counted once, in the search
space, never inside an optimizer. A budget is a bound: the greedy finish of an
unfinished answer is paid from the same budget, never past it."""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from trajgraph.errors import BudgetError


class BudgetExhausted(Exception):
    """Raised by the search space when a limit is reached; the driver catches it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


LIMITS = ("policy_calls", "tokens", "wall_time_s", "env_steps")  # the resources a Budget can cap
DEFAULT_POLICY_CALLS = 64  # what `Budget()` allows when no limit is named
_DEFAULT: Any = object()  # "not given": tells Budget() from Budget(wall_time_s=60)


@dataclass(frozen=True)
class Budget:
    """Limits for one search; `None` means no limit on that resource.

    `Budget()` allows 64 policy calls. A budget that names any limit keeps only the
    limits it names: `Budget(wall_time_s=60)` has no call cap, `Budget(policy_calls=None)`
    has no limit at all (open-ended optimizers refuse it).

    `finish=True`: an answer is a finished trajectory, paid from the budget. Until
    some trajectory has finished, the search keeps `finish_reserve` policy calls
    back (None: two fifths of `policy_calls`, at least 1). When it reaches that line
    with nothing finished, the space finishes its most promising open trajectory
    greedily from the reserve, then lets the search go on with whatever is left;
    once a trajectory has finished the reserve is released.
    Rollout-based searches finish a trajectory early and barely notice it; a search
    guided by a reward model alone (MCTS, RRO) may reach no end by itself, and on
    TextWorld (~28 decisions an episode, 100 calls) an eighth left 13 of 20 MCTS
    searches unfinished where two fifths left none and solved one more.
    If the finish cannot complete within what is left, the search ends `unfinished`
    and says so (`SearchResult.status`, `SearchResult.finish`).
    """

    policy_calls: int | None = _DEFAULT
    tokens: int | None = None
    wall_time_s: float | None = None
    env_steps: int | None = None
    finish: bool = True
    finish_reserve: int | None = None

    def __post_init__(self) -> None:
        if self.policy_calls is _DEFAULT:
            named = any(getattr(self, f) is not None for f in LIMITS[1:])
            object.__setattr__(self, "policy_calls", None if named else DEFAULT_POLICY_CALLS)
        for name in (*LIMITS, "finish_reserve"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BudgetError(f"Budget({name}={value!r}) is not a finite number; use a positive number or None (no limit)")
            if value <= 0 and not (name == "finish_reserve" and value == 0):
                raise BudgetError(f"Budget({name}={value}) allows no work; use a positive number or None")

    @property
    def limited(self) -> bool:
        """Whether anything stops a search that would otherwise go on (MCTS, BestOfN(n=None))."""
        return any(getattr(self, f) is not None for f in LIMITS)


@dataclass
class Spent:
    policy_calls: int = 0
    tokens: int = 0
    env_steps: int = 0
    wall_time_s: float = 0.0
    overrun_policy_calls: int = 0  # calls past Budget.policy_calls; 0 unless a custom driver lifts the bound
    finish_policy_calls: int = 0  # of policy_calls, spent finishing the answer greedily
    stopped_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BudgetMeter:
    """Thread-safe counter of what a search has spent against its budget."""

    budget: Budget
    spent: Spent = field(default_factory=Spent)
    started: float = field(default_factory=time.perf_counter)
    answered: bool = False  # set by the space once a valid trajectory has finished
    reserve_used: bool = False  # the space finished a trajectory from the reserve (or had nothing to finish)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        reason = self.exhausted()
        if reason is not None:
            self.spent.stopped_by = self.spent.stopped_by or reason
            raise BudgetExhausted(reason)

    def reserved(self) -> int:
        """Policy calls held back for the greedy finish (see `Budget`)."""
        b = self.budget
        if _FINISHING.get() or self.answered or self.reserve_used or not b.finish or b.policy_calls is None:
            return 0
        return b.finish_reserve if b.finish_reserve is not None else max(1, 2 * b.policy_calls // 5)

    def at_reserve(self) -> bool:
        """Whether the search has spent all but the reserve with nothing finished yet."""
        held = self.reserved()
        return held > 0 and self.budget.policy_calls is not None and self.spent.policy_calls >= self.budget.policy_calls - held

    def exhausted(self) -> str | None:
        b, s = self.budget, self.spent
        if b.policy_calls is not None and s.policy_calls >= b.policy_calls - self.reserved():
            return "policy_calls"
        if b.tokens is not None and s.tokens >= b.tokens:
            return "tokens"
        if b.env_steps is not None and s.env_steps >= b.env_steps:
            return "env_steps"
        if b.wall_time_s is not None and time.perf_counter() - self.started >= b.wall_time_s:
            return "wall_time_s"
        return None

    def time_left(self) -> float | None:
        """Seconds until the wall-time limit (None: no limit); the driver cancels in-flight calls then."""
        if self.budget.wall_time_s is None:
            return None
        return max(0.0, self.budget.wall_time_s - (time.perf_counter() - self.started))

    def reserve_calls(self, k: int) -> int:
        """Claim up to k policy calls; returns how many may be made (>= 1) or raises."""
        with self._lock:
            self.check()
            b = self.budget
            left = None if b.policy_calls is None else b.policy_calls - self.reserved() - self.spent.policy_calls
            n = k if left is None else max(1, min(k, left))
            self.spent.policy_calls += n
            if _FINISHING.get():
                self.spent.finish_policy_calls += n
            return n

    def add_tokens(self, n: int) -> None:
        with self._lock:
            self.spent.tokens += n

    def add_env_steps(self, n: int) -> None:
        with self._lock:
            self.spent.env_steps += n

    def report(self) -> Spent:
        self.spent.wall_time_s = time.perf_counter() - self.started
        cap = self.budget.policy_calls
        self.spent.overrun_policy_calls = 0 if cap is None else max(0, self.spent.policy_calls - cap)
        return self.spent


# Set (per task) while a greedy finish runs: its calls may use the reserve, and count as finish
# calls. A context variable, not a meter field, so concurrent branches keep the reserve held.
_FINISHING: contextvars.ContextVar[bool] = contextvars.ContextVar("trajgraph_finishing", default=False)


@contextlib.contextmanager
def finishing() -> Iterator[None]:
    token = _FINISHING.set(True)
    try:
        yield
    finally:
        _FINISHING.reset(token)


__all__ = ["Budget", "BudgetExhausted", "BudgetMeter", "Spent", "DEFAULT_POLICY_CALLS", "finishing"]
