"""MCTS over decision points, as in LATS.

Paper: Zhou et al., "Language Agent Tree Search Unifies Reasoning, Acting, and
Planning in Language Models" (ICML 2024, arXiv:2310.04406). One iteration is
the paper's six operations, one method each:

    leaf = select(root)                      # UCT descent to a node worth expanding
    children = expand(space, leaf)           # k sampled actions, each a real branch
    values = evaluate(space, children)       # reward model; without one, a simulation each
    end = simulate(space, best child)        # LATS' rollout to a terminal state
    backpropagate(node, value)               # running mean up to the root
    reflect(space, end)                      # a failed terminal becomes a lesson

Reflections reach later proposals as `state["reflections"]`. It stops at the first
success; otherwise it grows the tree until the budget stops it (open-ended: all
budget left over is spent on the tree).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from trajgraph.errors import ConfigError
from trajgraph.search.optimizers.base import at_least, finite, success
from trajgraph.search.space import Node, Space
from trajgraph.search.tree import TreeLog
from trajgraph.store.json import canonical_key


def uct(child: Node, parent_visits: int, c: float) -> float:
    """value + c * sqrt(ln N / n); unvisited children first."""
    if child.visits == 0:
        return math.inf
    return (child.value or 0.0) + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def backpropagate(node: Node | None, value: float) -> None:
    """Running mean of every value seen below each ancestor."""
    while node is not None:
        node.visits += 1
        node.value = (node.value or 0.0) + (value - (node.value or 0.0)) / node.visits
        node = node.parent


@dataclass
class _Progress:
    """What one search remembers between iterations (not in the tree itself)."""

    expansions: dict[int, int] = field(default_factory=dict)  # node id -> times expanded
    done: set[int] = field(default_factory=set)  # nodes whose whole subtree is finished


@dataclass(frozen=True)
class MCTS:
    k: int = 3  # actions sampled per expansion
    c: float = 1.0  # exploration weight
    simulate_best: bool | None = None  # roll out from the best new child after evaluation; None: when there is no reward model
    reflect_with: Callable[[Node], str] | None = None  # failed terminal -> lesson (LATS' reflection)
    success: float = 1.0
    max_expansions: int = 3  # re-sample a node whose k samples merged into fewer than k distinct actions
    name: ClassVar[str] = "mcts"
    open_ended: ClassVar[bool] = True  # grows the tree until success or the budget stops it

    def __post_init__(self) -> None:
        at_least(self, k=self.k, max_expansions=self.max_expansions)
        finite(self, c=self.c, success=self.success)
        if self.c < 0:
            raise ConfigError(f"MCTS(c={self.c!r}): the exploration weight must be >= 0")

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        if root.terminal:
            return root
        progress = _Progress()
        while (leaf := self.select(root, progress.expansions, progress.done)) is not None:
            children = await self.expand(space, leaf, progress)
            if not children:
                continue
            values, ends = await self.evaluate(space, children)
            valid = [(ch, v) for ch, v in zip(children, values) if not ch.invalid]
            for child, v in valid:
                self.backpropagate(child, v)
            for child, end in zip(children, ends):
                if child.invalid:
                    continue
                if success(end, self.success):
                    end.reason = "reached success"
                    self._pairs(log, leaf, child, valid)
                    return end
                self.reflect(space, end)
            if not valid:
                continue
            best, _ = max(valid, key=lambda cv: cv[1])
            self._pairs(log, leaf, best, valid)
            if self._simulates_best(space) and not best.terminal:
                end = await self.simulate(space, best)
                self.backpropagate(best, end.outcome if end.outcome is not None else (await space.score([end]))[0])
                if success(end, self.success):
                    end.reason = "reached success (simulation)"
                    return end
                self.reflect(space, end)
        log.stats["exhausted"] = True  # every branch finished without success
        return space.best_terminal() or root

    # -- the six LATS operations ----------------------------------------------------------

    def select(self, root: Node, expansions: dict[int, int] | None = None, done: set[int] | None = None) -> Node | None:
        """Descend by UCT to a node to expand: a leaf, or a node still short of k
        distinct actions. Finished subtrees are skipped; None when all are finished."""
        expansions = {} if expansions is None else expansions
        done = set() if done is None else done
        node = root
        while True:
            widen = len(node.children) < self.k and expansions.get(node.id, 0) < self.max_expansions
            if not node.terminal and (not node.children or widen):
                return node
            live = [ch for ch in node.children if not ch.invalid and ch.id not in done and not ch.terminal]
            if not live:  # everything below is finished: never select this subtree again
                done.add(node.id)
                if node is root:
                    return None
                node = root
                continue
            parent = node
            node = max(live, key=lambda ch: uct(ch, parent.visits, self.c))

    async def expand(self, space: Space, leaf: Node, progress: _Progress) -> list[Node]:
        """Sample up to k actions not yet tried at `leaf` and branch on each."""
        progress.expansions[leaf.id] = progress.expansions.get(leaf.id, 0) + 1
        known = {canonical_key(ch.action) for ch in leaf.children}
        want = self.k - len(known) if known else self.k
        candidates = [c for c in await space.propose(leaf, want) if c.key not in known]
        if not candidates:
            return []
        return list(await space.gather(*(space.expand(leaf, c) for c in candidates)))

    async def evaluate(self, space: Space, children: list[Node]) -> tuple[list[float], list[Node]]:
        """(value of each child, the node its value was read at). With a reward model:
        its score (outcome at terminals). Without one, LATS' fallback: one simulation
        from each child, valued by the outcome it ends with."""
        if space.reward is not None or self.simulate_best is False:
            for child in children:
                if child.invalid:
                    child.reason = child.reason or "invalid action"
            return await space.score(children), list(children)
        ends = await space.gather(*(self.simulate(space, ch) if not (ch.terminal or ch.invalid) else _same(ch) for ch in children))
        values = [e.outcome if e.outcome is not None else 0.0 for e in ends]
        for child, v in zip(children, values):
            child.score = v
            if child.invalid:
                child.reason = child.reason or "invalid action"
        return values, ends

    async def simulate(self, space: Space, node: Node) -> Node:
        """Finish the trajectory from `node` with the policy's first sample at each step."""
        return await space.rollout(node)

    @staticmethod
    def backpropagate(node: Node | None, value: float) -> None:
        """Running mean of every value seen below each ancestor (`backpropagate` above)."""
        backpropagate(node, value)

    def reflect(self, space: Space, end: Node) -> None:
        """A finished trajectory below success becomes a lesson later proposals see."""
        if end.terminal and not end.invalid and self.reflect_with is not None:
            space.reflections.append(self.reflect_with(end))

    def _simulates_best(self, space: Space) -> bool:
        return bool(self.simulate_best) and space.reward is not None

    @staticmethod
    def _pairs(log: TreeLog, at: Node, best: Node, scored: list[tuple[Node, float]]) -> None:
        for other, s in scored:
            if other is not best and s < (best.score or 0.0):
                log.pair("mcts", at, best, other, best.score, s)


async def _same(node: Node) -> Node:
    return node
