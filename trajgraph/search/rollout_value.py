"""Monte Carlo process reward: the mean final reward of n rollouts from a node.

As in IPR (Xiong et al., "Watch Every Step! LLM Agent Learning via Iterative
Step-Level Process Refinement", EMNLP 2024) and RRO's process supervision:
a step's value is estimated by finishing the trajectory n times with the policy.
Rollouts are real branches through the graph and spend the search's budget.
`aggregate="max"` values a step by the best of its rollouts instead, for a
deterministic environment where the best finished trajectory below a state is a
lower bound on what that state can reach; finished trajectories already in the
tree below the state count among the n (a state passed by earlier rollouts costs
fewer new ones), and the new ones turn away from finished subtrees and loops
(`Space.rollout`), so each is a trajectory not seen before. The mean's rollouts
are the policy's own samples, where they lead (`Space.rollout(fresh=False)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trajgraph.search.space import Space
    from trajgraph.search.tree import Node


@dataclass(frozen=True)
class RolloutValue:
    """A `Scorer` (trajgraph.search.scoring): pass it as `reward=` to any search."""

    n: int = 4
    unknown: float = 0.0  # value of a rollout whose outcome the task does not report
    aggregate: str = "mean"  # "mean": the policy's expected outcome (IPR); "max": the best outcome reachable
    ceiling: float = 1.0  # with "max": an outcome this high cannot be beaten, so no more rollouts from there

    async def score_nodes(self, space: Space, nodes: Sequence[Node]) -> list[float]:
        return await space.gather(*(self._value(space, n) for n in nodes))

    async def _value(self, space: Space, node: Node) -> float:
        if node.terminal:
            return node.outcome if node.outcome is not None else self.unknown
        if self.aggregate != "max":
            ends = await space.gather(*(space.rollout(node, fresh=False) for _ in range(self.n)))
            values = [e.outcome if e.outcome is not None else self.unknown for e in ends]
            node.value = sum(values) / len(values)
            return node.value
        # trajectories already through the state count; new ones only while the ceiling is not reached
        values = [e.outcome if e.outcome is not None else self.unknown for e in _finished_below(space.resolve(node))]
        for _ in range(max(0, self.n - len(values))):
            if values and max(values) >= self.ceiling:
                break
            end = await space.rollout(node)
            values.append(end.outcome if end.outcome is not None else self.unknown)
        node.value = max(values)
        return node.value


def _finished_below(node: Node) -> list[Node]:
    """The finished, valid trajectories already in the tree below `node`."""
    out, stack = [], list(node.children)
    while stack:
        n = stack.pop()
        if n.terminal:
            if not n.invalid:
                out.append(n)
        else:
            stack.extend(n.children)
    return out


__all__ = ["RolloutValue"]
