"""Best-of-n: n independent trajectories, keep the best.

Ranked by final outcome when the task gives one, else by the reward model
(the "sample n, rerank" baseline, as in DSPy's BestOfN). With `n=None` it
samples until the budget is spent (leftover budget is what it is for); it stops
early once one trajectory reaches `success` when outcomes are known. An invalid
trajectory (a failed call, an inadmissible action) never ranks above a valid one. Emits a pair at the first step where the best
trajectory and each worse one diverge (same prefix, chosen vs rejected).

Beyond the baseline: in a deterministic space (transpositions on) a situation already
scored is not sampled again. A sample that would walk into a finished subtree is
turned to an open branch or an untried admissible action (`Space.rollout`), so each
trajectory is new; when every trajectory has been seen it stops (`stats["exhausted"]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trajgraph.search.budget import BudgetExhausted
from trajgraph.search.optimizers.base import at_least, finite, success
from trajgraph.search.space import Node, Space
from trajgraph.search.tree import TreeLog
from trajgraph.store.json import canonical_key


@dataclass(frozen=True)
class BestOfN:
    n: int | None = None
    success: float = 1.0
    name: ClassVar[str] = "best-of-n"

    def __post_init__(self) -> None:
        at_least(self, n=self.n)
        finite(self, success=self.success)

    @property
    def open_ended(self) -> bool:  # samples until the budget is spent
        return self.n is None

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        finished: list[Node] = []
        try:
            while self.n is None or len(finished) < self.n:
                leaf = await space.rollout(root)
                finished.append(leaf)
                if success(leaf, self.success):
                    break
                if space.is_closed(root):  # every trajectory has been seen: another would repeat one
                    log.stats["exhausted"] = True
                    break
        except BudgetExhausted:
            if not finished:
                raise
        scores = await space.score(finished)
        # valid finished trajectories first: an invalid branch tied at 0.0 won by its id before
        best = max(zip(scores, finished), key=lambda sn: (sn[1].terminal and not sn[1].invalid, sn[0], -sn[1].id))[1]
        best.reason = f"best of {len(finished)} by {'outcome' if best.outcome is not None else 'reward'}"
        for other, s in zip(finished, scores):
            if other is not best and s < (best.score or 0.0):
                _pair_at_divergence(log, best, other)
        log.stats["trajectories"] = len(finished)
        return best


def _pair_at_divergence(log: TreeLog, best: Node, other: Node) -> None:
    a, b = best.path(), other.path()
    for i in range(1, min(len(a), len(b))):
        if canonical_key(a[i].action) != canonical_key(b[i].action):
            log.pair("best_of_n", a[i - 1], a[i], b[i], best.score, other.score)
            return
