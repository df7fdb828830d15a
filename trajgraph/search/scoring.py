"""One scorer for every kind of reward: `as_reward()`, as `as_policy()` is for policies.

A search scores unfinished decision points with whatever the user gave as
`reward=`: a trained reward model (`tg.LocalRewardModel`), an LLM judge
(`tg.LLMJudge`), Monte Carlo rollouts (`tg.RolloutValue`), or a plain function
of the graph state. `as_reward` turns each into a `Scorer`, the one thing the
search space calls, so no optimizer or space method inspects what kind of
reward it holds:

    scorer = as_reward(reward)                 # None when there is nothing to score with
    values = await scorer.score_nodes(space, nodes)

`tg.EnvReward()` scores no prefix (the environment's reward exists only at the
end), so it becomes None: the search then reads `outcome(state)` at terminals.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from trajgraph.errors import ConfigError

if TYPE_CHECKING:
    from trajgraph.search.tree import Node


@runtime_checkable
class Scorer(Protocol):
    """Scores decision points of a search; higher is better, roughly in [0, 1].

    `space` is the `trajgraph.search.space.Space` being searched (typed loosely here: the space
    builds its scorer from this module, so naming its class would make an import cycle)."""

    async def score_nodes(self, space: Any, nodes: Sequence[Node]) -> list[float]: ...


@dataclass(frozen=True)
class ModelScorer:
    """A `trajgraph.reward.Reward` (reward model, judge, Weighted) over the nodes'
    text: the task and the (action, observation) turns that led to each node."""

    reward: Any

    async def score_nodes(self, space: Any, nodes: Sequence[Node]) -> list[float]:
        from trajgraph.reward.base import RewardItem

        items = [RewardItem(task=space.task_text, turns=n.turns()) for n in nodes]
        return [float(v) for v in await self.reward.ascore(items)]


@dataclass(frozen=True)
class StateScorer:
    """A function of the graph state (sync or async), e.g. a scripted reward in tests."""

    fn: Callable[[dict[str, Any]], Any]

    async def score_nodes(self, space: Any, nodes: Sequence[Node]) -> list[float]:
        out = []
        for n in nodes:
            value = self.fn(n.state)
            if inspect.isawaitable(value):
                value = await value
            out.append(float(value))
        return out


def as_reward(reward: Any) -> Scorer | None:
    """None or EnvReward -> None (outcomes only); a Scorer (e.g. RolloutValue) as is;
    a reward model or judge (score/ascore over RewardItems) -> ModelScorer; a function
    of the state -> StateScorer."""
    from trajgraph.reward.base import Reward
    from trajgraph.reward.combine import EnvReward

    if reward is None or isinstance(reward, EnvReward):
        return None
    if isinstance(reward, Scorer):
        return reward
    if isinstance(reward, Reward):
        return ModelScorer(reward)
    if callable(reward):
        return StateScorer(reward)
    raise ConfigError(f"reward {type(reward).__name__} is not a reward: give a reward model, tg.LLMJudge, "
                      "tg.RolloutValue(n) or a function of the state")


__all__ = ["Scorer", "ModelScorer", "StateScorer", "as_reward"]
