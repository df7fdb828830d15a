"""The one search contract: an optimizer is a class with one async method.

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node

It returns the node whose trajectory it chooses (finished when it can). Budget,
recording and progress live around it (`trajgraph.optimize`), not inside it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from trajgraph._tree import TreeLog
from trajgraph.space import Node, Space


@runtime_checkable
class Optimizer(Protocol):
    name: str

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node: ...


def success(node: Node, threshold: float) -> bool:
    return node.terminal and node.outcome is not None and node.outcome >= threshold


__all__ = ["Optimizer", "success"]
