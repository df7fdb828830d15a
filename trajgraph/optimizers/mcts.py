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

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from trajgraph._json import canonical_key
from trajgraph._tree import TreeLog
from trajgraph.optimizers.base import success
from trajgraph.space import Node, Space


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
    max_idle: int = 2000  # free re-visits of finished leaves in a row before the tree counts as exhausted
    name: str = "mcts"

    def select(self, root: Node, expansions: dict[int, int] | None = None) -> Node:
        """Descend by UCT; stop at a leaf, or at a node still short of k distinct actions."""
        expansions = expansions or {}
        node = root
        while node.children:
            live = [ch for ch in node.children if not ch.invalid]
            if not live or (len(node.children) < self.k and expansions.get(node.id, 0) < self.max_expansions):
                return node
            node = max(live, key=lambda ch: uct(ch, node.visits, self.c))
        return node

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        if root.terminal:
            return root
        idle = 0
        expansions: dict[int, int] = {}
        while idle < self.max_idle:
            leaf = self.select(root, expansions)
            if leaf.terminal:
                value = leaf.outcome if leaf.outcome is not None else (leaf.score or 0.0)
                backpropagate(leaf, value)
                idle += 1
                if success(leaf, self.success):
                    return leaf
                continue
            if leaf.children and not any(not ch.invalid for ch in leaf.children) and expansions.get(leaf.id, 0) >= self.max_expansions:
                leaf.terminal = True  # every action tried here was invalid: a dead end
                backpropagate(leaf, 0.0)
                idle += 1
                continue
            idle = 0
            expansions[leaf.id] = expansions.get(leaf.id, 0) + 1
            known = {canonical_key(ch.action) for ch in leaf.children}
            candidates = [c for c in await space.propose(leaf, self.k - len(known) if known else self.k) if c.key not in known]
            if not candidates:
                continue
            children = await asyncio.gather(*(space.expand(leaf, c) for c in candidates))
            scores = await space.score(children)
            for child, s in zip(children, scores):
                if child.invalid:
                    child.reason = "invalid action"
                    continue
                backpropagate(child, s)
            valid = [(ch, s) for ch, s in zip(children, scores) if not ch.invalid]
            for child, _ in valid:
                if success(child, self.success):
                    child.reason = "reached success"
                    self._pairs(log, leaf, child, valid)
                    return child
                if child.terminal and self.reflect is not None:
                    space.reflections.append(self.reflect(child))
            if valid:
                best, best_score = max(valid, key=lambda cs: cs[1])
                self._pairs(log, leaf, best, valid)
                simulate = self.simulate if self.simulate is not None else space.reward is None
                if simulate and not best.terminal:
                    end = await space.rollout(best)
                    value = end.outcome if end.outcome is not None else (await space.score([end]))[0]
                    backpropagate(best, value)
                    if success(end, self.success):
                        return end
        return space.best_terminal() or root

    @staticmethod
    def _pairs(log: TreeLog, at: Node, best: Node, scored: list[tuple[Node, float]]) -> None:
        for other, s in scored:
            if other is not best and s < (best.score or 0.0):
                log.pair("mcts", at, best, other, best.score, s)
