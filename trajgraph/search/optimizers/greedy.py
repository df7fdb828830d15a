"""Greedy: the agent as it is. One sample per decision point, taken as is. The
baseline every claim is measured against. It never branches, so leftover budget
stays unspent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trajgraph.search.space import Node, Space
from trajgraph.search.tree import TreeLog


@dataclass(frozen=True)
class Greedy:
    name: ClassVar[str] = "greedy"
    open_ended: ClassVar[bool] = False

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        node = root
        while not node.terminal:
            candidate = (await space.propose(node, 1))[0]
            node = await space.expand(node, candidate, merge=False)  # no loop cut: the agent as it is
            node.reason = node.reason or "greedy: the policy's only sample"  # an invalid one keeps its why
        return node
