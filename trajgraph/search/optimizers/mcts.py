"""MCTS over decision points, as in LATS.

Paper: Zhou et al., "Language Agent Tree Search Unifies Reasoning, Acting, and
Planning in Language Models" (ICML 2024, arXiv:2310.04406). Each iteration:
selection by UCT from the root; expansion of the selected decision point with k
sampled actions; evaluation of each new child (known outcome when finished,
else the reward model, optionally a simulation to the end); running-mean
backpropagation to the root. Failed terminals can be turned into reflections
that later proposals see (`state["reflections"]`). Stops early on success.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from trajgraph.store._json import canonical_key
from trajgraph.search._write import TreeLog
from trajgraph.errors import ConfigError
from trajgraph.search.optimizers.base import at_least, success
from trajgraph.search.space import Node, Space


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


@dataclass(frozen=True)
class MCTS:
    k: int = 3  # actions sampled per expansion
    c: float = 1.0  # exploration weight
    simulate: bool | None = None  # roll out from the best new child (LATS' simulation step); None: when there is no reward model
    reflect: Callable[[Node], str] | None = None
    success: float = 1.0
    max_expansions: int = 3  # re-sample a node whose k samples merged into fewer than k distinct actions
    open_ended = True  # not a field: grows the tree until success or the budget stops it
    name: str = "mcts"

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

    def __post_init__(self) -> None:
        at_least(self, k=self.k, max_expansions=self.max_expansions)
        if self.c < 0:
            raise ConfigError(f"MCTS(c={self.c!r}): the exploration weight must be >= 0")

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        if root.terminal:
            return root
        expansions: dict[int, int] = {}
        done: set[int] = set()
        while (leaf := self.select(root, expansions, done)) is not None:
            expansions[leaf.id] = expansions.get(leaf.id, 0) + 1
            known = {canonical_key(ch.action) for ch in leaf.children}
            candidates = [c for c in await space.propose(leaf, self.k - len(known) if known else self.k) if c.key not in known]
            if not candidates:
                continue
            children = await space.gather(*(space.expand(leaf, c) for c in candidates))
            simulate = self.simulate if self.simulate is not None else space.reward is None
            if space.reward is None and simulate:
                # no value function: each new child is valued by one simulation to the end
                ends = await space.gather(*(space.rollout(ch) if not (ch.terminal or ch.invalid) else _same(ch) for ch in children))
                scores = [e.outcome if e.outcome is not None else 0.0 for e in ends]
                for ch, s in zip(children, scores):
                    ch.score = s
            else:
                ends, scores = list(children), await space.score(children)
            for child, s in zip(children, scores):
                if child.invalid:
                    child.reason = child.reason or "invalid action"
                    continue
                backpropagate(child, s)
            valid = [(ch, s) for ch, s in zip(children, scores) if not ch.invalid]
            for child, end in zip(children, ends):
                if not child.invalid and success(end, self.success):
                    end.reason = "reached success"
                    self._pairs(log, leaf, child, valid)
                    return end
                if end.terminal and not child.invalid and self.reflect is not None:
                    space.reflections.append(self.reflect(end))
            if valid:
                best, _ = max(valid, key=lambda cs: cs[1])
                self._pairs(log, leaf, best, valid)
                if simulate and space.reward is not None and not best.terminal:
                    end = await space.rollout(best)
                    value = end.outcome if end.outcome is not None else (await space.score([end]))[0]
                    backpropagate(best, value)
                    if success(end, self.success):
                        return end
        log.stats["exhausted"] = True
        return space.best_terminal() or root

    @staticmethod
    def _pairs(log: TreeLog, at: Node, best: Node, scored: list[tuple[Node, float]]) -> None:
        for other, s in scored:
            if other is not best and s < (best.score or 0.0):
                log.pair("mcts", at, best, other, best.score, s)


async def _same(node: Node) -> Node:
    return node
