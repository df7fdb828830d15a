"""EnvReward (the environment's own reward) and Weighted (a weighted mean of rewards)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.reward.base import Reward, RewardItem


class EnvReward:
    """Use the environment's own final reward, and nothing else.

    A marker more than a scorer: an unfinished prefix has no environment reward
    yet, so optimizers given `EnvReward()` read `outcome(state)` at terminal
    nodes (e.g. `state["reward"]` of an env loop) and rely on rollouts to reach
    them. `score` on prefixes therefore raises; `from_state` reads a state.
    """

    def __init__(self, key: str = "reward") -> None:
        self.key = key

    def from_state(self, state: Mapping[str, Any]) -> float | None:
        """The state's own reward (`state[key]`), or None while the episode runs."""
        value = state.get(self.key)
        return None if value is None else float(value)

    def score(self, items: Sequence[RewardItem]) -> list[float]:
        if not items:
            return []
        raise ConfigError(
            "EnvReward has no score for an unfinished prefix; optimizers read the outcome at terminals. "
            "To score open nodes use LocalRewardModel, LLMJudge or RolloutValue"
        )

    async def ascore(self, items: Sequence[RewardItem]) -> list[float]:
        return self.score(items)

    def __repr__(self) -> str:
        return "EnvReward()" if self.key == "reward" else f"EnvReward(key={self.key!r})"


class Weighted:
    """sum(w_i * reward_i) / sum(w_i): e.g. a local model tempered by an LLM judge.

    >>> Weighted([(LocalRewardModel("rm/"), 0.7), (LLMJudge("openai/gpt-4o-mini"), 0.3)])
    """

    def __init__(self, parts: Sequence[tuple[Reward, float]]) -> None:
        parts = list(parts)
        if not parts:
            raise ConfigError("Weighted needs at least one (reward, weight) pair")
        for reward, weight in parts:
            if isinstance(reward, EnvReward):
                raise ConfigError("EnvReward cannot be weighted: it scores no prefix; give it to the optimizer on its own")
            if not isinstance(reward, Reward):
                raise ConfigError(f"{reward!r} is not a reward: it needs score(items) and ascore(items)")
            if weight < 0:
                raise ConfigError(f"negative weight {weight} for {reward!r}")
        total = sum(w for _, w in parts)
        if total <= 0:
            raise ConfigError("Weighted: the weights sum to zero")
        self.parts = [(r, w / total) for r, w in parts]

    def score(self, items: Sequence[RewardItem]) -> list[float]:
        return self._mix([reward.score(items) for reward, _ in self.parts])

    async def ascore(self, items: Sequence[RewardItem]) -> list[float]:
        return self._mix(list(await asyncio.gather(*(reward.ascore(items) for reward, _ in self.parts))))

    def _mix(self, columns: list[list[float]]) -> list[float]:
        return [sum(w * col[i] for (_, w), col in zip(self.parts, columns)) for i in range(len(columns[0]))]

    def __repr__(self) -> str:
        return "Weighted([" + ", ".join(f"({r!r}, {w:.3g})" for r, w in self.parts) + "])"


__all__ = ["EnvReward", "Weighted"]
