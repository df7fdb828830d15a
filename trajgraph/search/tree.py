"""The search tree's vocabulary: decision-point nodes, candidate actions, forkable environments.

Kept apart from space.py (which runs the graph to produce them) because every
optimizer, the tree writer and the reward adapters read these types without
needing the machinery that makes them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from langchain_core.runnables import RunnableConfig


@runtime_checkable
class Environment(Protocol):
    """An environment outside the graph state that can fork itself."""

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...


@dataclass
class Candidate:
    """A proposed action: the decision node's update, as the graph would write it."""

    action: Any
    text: str
    key: str
    count: int = 1  # how many samples proposed it (duplicates merged)
    tokens: int = 0
    invalid: bool = False
    error: str = ""
    prior: float | None = None  # policy's own probability, when it gives one


@dataclass(eq=False)
class Node:
    """A decision point (or a finished state) in the search tree."""

    id: int
    config: RunnableConfig
    state: dict[str, Any]
    parent: Node | None = None
    action: Any = None
    action_text: str = ""
    observation: str = ""
    depth: int = 0
    terminal: bool = False
    outcome: float | None = None
    invalid: bool = False
    snapshot: Any = None
    steps: list[tuple[str, Any]] = field(default_factory=list)  # (node name, update) from parent to here
    children: list[Node] = field(default_factory=list)
    score: float | None = None
    value: float | None = None
    visits: int = 0
    chosen: bool = False
    reason: str = ""
    key: str = ""  # the state key (`Space.state_key`): equal keys are the same situation
    twin: Node | None = None  # a transposition: the first node that reached this state
    prior: float | None = None  # the policy's probability for the action that led here, when it gives one

    def path(self) -> list[Node]:
        out: list[Node] = []
        node: Node | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def turns(self) -> tuple[tuple[str, str], ...]:
        """(action, observation) pairs from the root to here, for reward models."""
        return tuple((n.action_text, n.observation) for n in self.path()[1:])

    def __repr__(self) -> str:
        return f"Node(id={self.id}, depth={self.depth}, action={self.action_text!r}, terminal={self.terminal}, outcome={self.outcome})"


Outcome = Callable[[dict[str, Any]], "float | None"]


def default_outcome(state: dict[str, Any]) -> float | None:
    """Env loops put their final reward in `reward`; anything else is unknown."""
    value = state.get("reward") if isinstance(state, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class TreeLog:
    """What an optimizer records beyond the tree itself; the search driver writes it.

    An optimizer receives one with every search (`search(space, root, log)`), so a
    custom optimizer records exactly what the built-in ones do:

    - `pair(source, at, chosen, rejected, ...)`: a step-level preference at decision
      point `at` (chosen beat rejected there). Stored as `PreferencePair` rows with
      `source` (e.g. "rro", "mcts", or your optimizer's name) and exported for DPO.
    - `notes`: free-text lines kept with the search run.
    - `stats`: numbers (and lists of numbers) about the search, e.g.
      `stats["candidates_per_step"]`; scalar ones are stored in the run's metadata
      and all of them are returned in `SearchResult.stats`.

    The tree (every `Node` with its score, value, visits, reason) is written from
    the space itself, so an optimizer only sets `node.reason` to say why it chose.
    """

    def __init__(self) -> None:
        self.pairs: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.stats: dict[str, Any] = {}

    def pair(self, source: str, at: Node, chosen: Node | Candidate, rejected: Node | Candidate,
             chosen_score: float | None = None, rejected_score: float | None = None) -> None:
        """A step-level preference at decision point `at`: chosen beat rejected."""
        self.pairs.append(dict(source=source, at=at, chosen=chosen, rejected=rejected,
                               chosen_score=chosen_score, rejected_score=rejected_score))


def insert_by_id(nodes: list[Node], node: Node) -> None:
    """Keep a node list in id order (the order nodes were asked for)."""
    bisect.insort(nodes, node, key=lambda n: n.id)


__all__ = ["Environment", "Candidate", "Node", "Outcome", "TreeLog", "default_outcome", "insert_by_id"]
