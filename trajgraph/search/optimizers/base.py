"""The one search contract: an optimizer is a class with a name, a flag and one async method.

    name: str                     # "mcts"; recorded with the search, tags bench rows
    open_ended: bool              # True when only a budget stops it (a search then refuses
                                  # a Budget without limits)
    async def search(self, space: Space, root: Node, log: TreeLog) -> Node

`search` returns the node whose trajectory it chooses (finished when it can),
using only `space.propose / expand / score / gather / rollout` and recording
preferences and numbers in `log` (`tg.TreeLog`). Budget, recording, the greedy
finish and the final status live around it (`trajgraph.search.optimize`), not
inside it: an invalid or unfinished node returned while a valid finished one
exists is replaced by the best finished one.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

from trajgraph.errors import ConfigError
from trajgraph.search.rollout_value import RolloutValue
from trajgraph.search.scoring import ModelScorer, Scorer
from trajgraph.search.space import Node, Space
from trajgraph.search.tree import TreeLog


@runtime_checkable
class Optimizer(Protocol):
    """What `tg.optimize`/`tg.search` accept as `optimizer=` (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def open_ended(self) -> bool: ...

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node: ...


def at_least(owner: object, minimum: int = 1, **values: int | None) -> None:
    """Refuse at construction a setting that would make the search do nothing or
    loop (RRO(k_max=0) used to fail deep inside the search with max() of nothing)."""
    for field, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise ConfigError(f"{type(owner).__name__}({field}={value!r}): use a whole number >= {minimum}")


def finite(owner: object, **values: float | None) -> None:
    """Refuse NaN and infinities: MCTS(c=nan) ranked every child equal and never stopped."""
    for field, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ConfigError(f"{type(owner).__name__}({field}={value!r}): use a finite number")


def resolve_optimizer(optimizer: Any) -> Optimizer:
    """An optimizer object, or its name ("greedy", "best-of-n", "rro", "mcts",
    "se-agent", "apprentice") for the defaults; None gives MCTS()."""
    from trajgraph.search.optimizers import BY_NAME, MCTS

    if optimizer is None:
        return MCTS()
    if isinstance(optimizer, str):
        if optimizer not in BY_NAME:
            raise ConfigError(f"unknown optimizer {optimizer!r}; choose from {', '.join(BY_NAME)}")
        return BY_NAME[optimizer]()
    if not isinstance(optimizer, Optimizer):
        missing = [m for m in ("name", "open_ended", "search") if not hasattr(optimizer, m)]
        if "search" in missing:
            raise ConfigError(f"optimizer {optimizer!r} has no search(space, root, log) method")
        raise ConfigError(f"optimizer {type(optimizer).__name__} lacks {' and '.join(missing)}; "
                          "an optimizer declares name: str and open_ended: bool (see tg.Optimizer)")
    return optimizer


def value_source(space: Space, rollouts: int, value: str = "auto", aggregate: str = "auto") -> tuple[str, Scorer | None]:
    """How an optimizer values unfinished states, and the name it logs: the search's
    reward model when given; else the environment's partial outcome when it gives one
    (`partial=`: free, and on the known-optimum suite more informative than a few
    rollouts); else the mean outcome of Monte Carlo rollouts of the agent's own node
    (IPR). `value="rollouts"` or `"partial"` forces one. The rollouts' outcomes are
    averaged (`aggregate="mean"`), or the best is taken (`"max"`; `"auto"`: in a
    deterministic space, where it is what the state is known to reach)."""
    if space.reward is not None:
        return "reward model", space.reward
    partial = space.partial_scorer()
    if partial is not None and value != "rollouts":
        return "partial outcome", partial
    if rollouts > 0:
        how = "max" if aggregate == "max" or (aggregate == "auto" and space.transpositions) else "mean"
        return f"Monte Carlo rollouts (n={rollouts}, {how})", RolloutValue(n=rollouts, aggregate=how)
    return "none (outcomes at finished states only)", None


def fills_in(space: Space, widen: str) -> bool:
    """Whether the state's admissible actions fill in when the policy repeats itself.
    `widen="value"`: always; `"repeats"`: never (the papers' re-sampling); `"auto"`: unless
    a learned reward model (or judge) over the trajectory's text values the candidates.
    Such a model is trained on the policy's own trajectories, and an action the policy
    would not propose is where it knows least: on the demo's TextWorld suite, with the
    demo's reward model, fill-ins it picked took RRO from 8/20 to 5/20 and MCTS from
    5/20 to 2/20 (benchmarks/README.md, "TextWorld gate"). Outcomes, rollouts, a partial
    outcome or a function of the state value a fill-in as well as a sample."""
    if widen == "auto":
        return not isinstance(space.reward, ModelScorer)
    return widen == "value"


def success(node: Node, threshold: float) -> bool:
    return node.terminal and node.outcome is not None and node.outcome >= threshold


__all__ = ["Optimizer", "at_least", "finite", "resolve_optimizer", "fills_in", "success", "value_source"]
