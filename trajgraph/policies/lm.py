"""A causal language model folder (e.g. one `trajgraph train policy --method sft` wrote) as an env-loop policy.

The prompt is the chat that `export sft` writes for env loops and that the model
was trained on (`trajgraph.export.chat.turns_messages`): the task (and the first
observation) as the user, each action as the assistant, each observation as the
user. `mode="rank"` scores every admissible command by its log-probability as
the next assistant turn and samples from softmax(logprob / temperature), so the
answer is always admissible; `mode="generate"` samples a reply and maps it to
the closest admissible command (counted in `stats.invalid_outputs` when not verbatim).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trajgraph._internal.modelfolder import SAFE_LOAD, refuse_remote_code
from trajgraph.errors import ConfigError

from .prompt import PolicyStats, SeededPolicy, StateSeeds, admissible, check_temperature, objective, resolve, sample
from .smollm import SmolLM2

CARD = "trajgraph-card.json"
KIND = "trajgraph-causal-lm"


def chat_of(state: Mapping[str, Any], window: int = 8) -> list[dict[str, str]]:
    """The state as the export's env-loop chat, ending with a user turn (the last `window` turns kept)."""
    history = [h for h in state.get("history") or [] if isinstance(h, Mapping)][-window:]
    first = objective(state) if history else f"{objective(state)}\n{state.get('observation') or ''}".strip()
    messages = [{"role": "user", "content": first}]
    for h in history:
        messages.append({"role": "assistant", "content": str(h.get("action") or "")})
        messages.append({"role": "user", "content": str(h.get("observation") or "")})
    return messages


def is_lm_folder(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file() and any(Path(path).glob("*.safetensors"))


class LMPolicy(SeededPolicy):
    """A decision node `(state) -> {"action": str}` with `propose(state, k)`, backed by a model folder."""

    def __init__(self, model: SmolLM2, card: dict[str, Any], mode: str, temperature: float, seed: int | None, window: int) -> None:
        if mode not in ("rank", "generate"):
            raise ConfigError(f"LM policy mode must be 'rank' or 'generate', got {mode!r}")
        self.model, self.card, self.mode, self.window = model, card, mode, window
        self.temperature = check_temperature(temperature)
        self.seeds = StateSeeds(seed)
        self.stats = PolicyStats()
        self.name = f"{card.get('name', 'lm')}@{str(card.get('hash', 'base'))[:12]}"

    @property
    def version(self) -> dict[str, Any]:
        return {"name": self.card.get("name", "lm"), "hash": self.card.get("hash"), "round": self.card.get("round")}

    def _choose(self, state: Mapping[str, Any], k: int, rng: random.Random) -> list[str]:
        commands = admissible(state)
        messages = chat_of(state, self.window)
        self.stats.calls += 1
        self.stats.samples += k
        if self.mode == "rank":
            sums, lengths, prompt_tokens = self.model.score_replies(messages, commands)
            self.stats.tokens += prompt_tokens + sum(lengths)
            return sample(commands, sums, self.temperature, k, rng)
        completions, prompt_tokens = self.model.generate(messages, n=k, temperature=self.temperature, max_tokens=16,
                                                         seed=rng.randrange(2**31), stop=["\n"])
        self.stats.tokens += prompt_tokens + sum(len(c.token_ids) for c in completions)
        return [resolve(c.text, commands, self.stats, rng) for c in completions]

    def __call__(self, state: Mapping[str, Any]) -> dict[str, str]:
        return {"action": self._choose(state, 1, self.seeds.rng(state))[0]}

    async def propose(self, state: Mapping[str, Any], k: int) -> list[dict[str, str]]:
        rng = self.seeds.rng(state)
        return [{"action": a} for a in await asyncio.to_thread(self._choose, state, k, rng)]

    def __repr__(self) -> str:
        return self.name


def load_lm_policy(path: str | Path, mode: str = "rank", temperature: float = 0.3, seed: int | None = 0, window: int = 8,
                   device: str | None = None) -> LMPolicy:
    """Load a transformers model folder (safetensors + tokenizer) as a policy; only safetensors and JSON are read."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not is_lm_folder(path):
        raise ConfigError(f"{path}: not a model folder (needs config.json and *.safetensors); train one with `trajgraph train policy --method sft`")
    start = time.perf_counter()
    refuse_remote_code(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, **SAFE_LOAD)
    tokenizer = AutoTokenizer.from_pretrained(str(path), **SAFE_LOAD)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))  # type: ignore[arg-type]  # transformers types .to() narrowly
    card = json.loads((path / CARD).read_text()) if (path / CARD).is_file() else {"name": path.name}
    return LMPolicy(SmolLM2(model, tokenizer, str(path), time.perf_counter() - start), card, mode, temperature, seed, window)


__all__ = ["LMPolicy", "load_lm_policy", "chat_of", "is_lm_folder", "CARD", "KIND"]
