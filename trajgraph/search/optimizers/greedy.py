"""Greedy: the agent as it is. One sample per decision point, taken as is. The
baseline every claim is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from trajgraph.search._write import TreeLog
from trajgraph.search.space import Node, Space


@dataclass(frozen=True)
class Greedy:
    name: str = "greedy"

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        node = root
        while not node.terminal:
            candidate = (await space.propose(node, 1))[0]
            node = await space.expand(node, candidate)
            node.reason = "greedy: the policy's only sample"
        return node
