"""The one search contract: an optimizer is a class with one async method.

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node

It returns the node whose trajectory it chooses (finished when it can). Budget,
recording and progress live around it (`trajgraph.search.optimize`), not inside it. An
optimizer that only a budget stops says so with `open_ended = True`, and a search
then refuses a Budget without limits.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from trajgraph.search._write import TreeLog
from trajgraph.errors import ConfigError
from trajgraph.search.space import Node, Space


@runtime_checkable
class Optimizer(Protocol):
    name: str

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node: ...


def at_least(owner: object, minimum: int = 1, **values: int | None) -> None:
    """Refuse at construction a setting that would make the search do nothing or
    loop (RRO(k_max=0) used to fail deep inside the search with max() of nothing)."""
    for field, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise ConfigError(f"{type(owner).__name__}({field}={value!r}): use a whole number >= {minimum}")


def resolve_optimizer(optimizer: Any) -> Any:
    """An optimizer object, or its name ("greedy", "best-of-n", "rro", "mcts",
    "se-agent") for the defaults; None gives MCTS()."""
    from trajgraph.search.optimizers import BY_NAME, MCTS

    if optimizer is None:
        return MCTS()
    if isinstance(optimizer, str):
        if optimizer not in BY_NAME:
            raise ConfigError(f"unknown optimizer {optimizer!r}; choose from {', '.join(BY_NAME)}")
        return BY_NAME[optimizer]()
    if not callable(getattr(optimizer, "search", None)):
        raise ConfigError(f"optimizer {optimizer!r} has no search(space, root, log) method")
    return optimizer


def success(node: Node, threshold: float) -> bool:
    return node.terminal and node.outcome is not None and node.outcome >= threshold


__all__ = ["Optimizer", "at_least", "resolve_optimizer", "success"]
