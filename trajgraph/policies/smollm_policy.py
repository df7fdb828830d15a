"""SmolLM2-135M-Instruct as an env-loop policy: generate a command (through litellm's
in-process provider, `provider.register_smollm2`) or rank the admissible commands by
log-probability (`smollm.rank_commands`). The model itself lives in `smollm.py`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from trajgraph.errors import ConfigError

from .prompt import PolicyStats, SeededPolicy, StateSeeds, admissible, build_messages, check_temperature, resolve, sample
from .provider import register_smollm2
from .smollm import SmolLM2, smollm2


class SmolLM2Policy(SeededPolicy):
    """A decision node `(state) -> {"action": str}` backed by SmolLM2; see `smollm2_policy`."""

    def __init__(self, mode: str, temperature: float, seed: int | None, max_tokens: int, window: int, reduce: str, model: SmolLM2 | None) -> None:
        if mode not in ("generate", "rank"):
            raise ConfigError(f"smollm2_policy mode must be 'generate' or 'rank', got {mode!r}")
        if reduce not in ("sum", "mean"):
            raise ConfigError(f"smollm2_policy reduce must be 'sum' or 'mean', got {reduce!r}")
        self.mode, self.temperature, self.max_tokens, self.window, self.reduce = mode, check_temperature(temperature), max_tokens, window, reduce
        self.seeds = StateSeeds(seed)
        self.name = f"smollm2-{mode}(T={temperature:g})"
        self.stats = PolicyStats()
        self._model = model

    @property
    def model(self) -> SmolLM2:
        if self._model is None:
            self._model = smollm2()
        return self._model

    def _rank(self, state: Mapping[str, Any], commands: list[str], k: int, rng: random.Random) -> list[str]:
        sums, lengths, prompt_tokens = self.model.score_replies(build_messages(state, self.window), commands)
        scores = sums if self.reduce == "sum" else [s / n for s, n in zip(sums, lengths)]
        self.stats.calls += 1
        self.stats.tokens += prompt_tokens + sum(lengths)
        return sample(commands, scores, self.temperature, k, rng)

    def _request(self, state: Mapping[str, Any], k: int, rng: random.Random) -> dict[str, Any]:
        return {
            "model": register_smollm2(self._model),
            "messages": build_messages(state, self.window),
            "n": k,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stop": ["\n"],
            "seed": rng.randrange(2**31),  # reproducible per policy seed and state, different per call
        }

    def _resolve(self, response: Any, commands: list[str], rng: random.Random) -> list[str]:
        self.stats.calls += 1
        self.stats.tokens += int(response.usage.total_tokens)
        return [resolve(choice.message.content or "", commands, self.stats, rng) for choice in response.choices]

    def __call__(self, state: Mapping[str, Any]) -> dict[str, str]:
        commands = admissible(state)
        self.stats.samples += 1
        if len(commands) == 1:  # nothing to decide: no model call
            return {"action": commands[0]}
        rng = self.seeds.rng(state)
        if self.mode == "rank":
            return {"action": self._rank(state, commands, 1, rng)[0]}
        import litellm

        return {"action": self._resolve(litellm.completion(**self._request(state, 1, rng)), commands, rng)[0]}

    async def propose(self, state: Mapping[str, Any], k: int) -> list[dict[str, str]]:
        """k candidates from one batched model call (k sampled replies, or k draws from one ranking)."""
        commands = admissible(state)
        self.stats.samples += k
        if len(commands) == 1:
            return [{"action": commands[0]}] * k
        rng = self.seeds.rng(state)  # here, not in the thread: see StateSeeds
        if self.mode == "rank":
            actions = await asyncio.to_thread(self._rank, state, commands, k, rng)
        else:
            import litellm

            actions = self._resolve(await litellm.acompletion(**self._request(state, k, rng)), commands, rng)
        return [{"action": a} for a in actions]

    def __repr__(self) -> str:
        return self.name


def smollm2_policy(
    mode: str = "generate",
    temperature: float = 0.7,
    seed: int | None = 0,
    max_tokens: int = 16,
    window: int = 3,
    reduce: str = "sum",
    model: SmolLM2 | None = None,
) -> SmolLM2Policy:
    """SmolLM2 as an env-loop decision node that only ever returns an admissible command.

    mode="generate": the model writes a command (through litellm, provider `smollm2`); the
    reply is mapped to the closest admissible command (exact, prefix/substring, token
    overlap), and every non-verbatim reply is counted in `policy.stats.invalid_outputs`.
    mode="rank": each admissible command is scored by its log-probability as the reply
    (`reduce` = sum or per-token mean) and one is drawn from softmax(logprob / temperature).
    """
    return SmolLM2Policy(mode, temperature, seed, max_tokens, window, reduce, model)
