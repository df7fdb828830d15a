"""A trainable MiniLM policy: the frozen encoder plus a small scoring head over (state, command).

    score(s, c) = a * base(s, c) + MLP(phi(s, c))

`base` is the fixed similarity heuristic of `MiniLMPolicy.scores` and `a` starts
at 1 / its temperature with the MLP's last layer at zero, so an untrained head
*is* the base policy (round 0 of `tg.evolve`). phi joins the command's embedding
with what a fixed similarity cannot weigh: its products with the next open
instruction of the objective, the current observation and the previous action,
plus a few scalars (the base score, those cosines, how often the command was
already played, whether it repeats the last one, how far into the episode).

Training (`fit`) is behaviour cloning on successful trajectories (softmax over
the admissible commands, as in rejection-sampling fine-tuning, Yuan et al. 2023)
plus a Bradley-Terry loss on a search's step-level pairs (chosen vs rejected at
the same state: the preference data RRO, Cao et al. 2025, and MCTS produce).
The encoder is frozen, so every text is encoded once and training only moves the
head: minutes on 2 CPU cores for thousands of decisions.

A policy saves to a folder: `head.safetensors` + `policy.json` (its card: the
settings, the data it learned from, the round, metrics and a content hash). No
pickle: loading reads tensors and JSON only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError

from .minilm_ranker import MiniLM, MiniLMPolicy, _sentences, minilm_policy
from .prompt import PolicyStats, SeededPolicy, StateSeeds, admissible, check_temperature, objective, recent_history, sample

KIND = "trajgraph-minilm-head"
CARD = "policy.json"
WEIGHTS = "head.safetensors"
DIM = 384  # MiniLM-L6 embedding size
N_SCALARS = 8
BASE_TEMPERATURE = 0.1  # the base policy's sampling temperature: its scores / 0.1 are its logits
# A trained head's logits fit noisy labels (a search's successes include its detours), so its
# softmax at 1.0 is flat: on the demo's TextWorld test games best-of-n on it solved 2/20 at 1.0
# and 7/20 at 0.3 (the base: 6/20), greedy sampling 1/20 and 7/20. Trained heads sample at 0.3.
TRAINED_TEMPERATURE = 0.3


FEATURES = ("full", "scalars")


def _head(hidden: int, features: str = "full", base_weight: float = 1.0 / BASE_TEMPERATURE) -> Any:
    import torch

    if features not in FEATURES:
        raise ConfigError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")

    class Head(torch.nn.Module):
        """(B, 384) command + (B, 3, 384) context embeddings + (B, S) scalars -> (B,) score.

        features="scalars" reads only the scalars (a few hundred weights: less to
        overfit when the store holds a few dozen episodes)."""

        def __init__(self) -> None:
            super().__init__()
            self.full = features == "full"
            self.base_weight = torch.nn.Parameter(torch.tensor(float(base_weight)))
            width = 4 * DIM + N_SCALARS if self.full else N_SCALARS
            self.mlp = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
            last = self.mlp[2]
            assert isinstance(last, torch.nn.Linear)
            torch.nn.init.zeros_(last.weight)  # untrained head == base policy
            torch.nn.init.zeros_(last.bias)

        def forward(self, cmd: Any, ctx: Any, scalars: Any) -> Any:
            # cmd: (B, 384); ctx: (B, 3, 384) next instruction, observation, last action
            x = torch.cat([cmd, cmd.unsqueeze(1).mul(ctx).flatten(1), scalars], dim=-1) if self.full else scalars
            return self.base_weight * scalars[:, 0] + self.mlp(x).squeeze(-1)

    return Head()


@dataclass
class Parts:
    """What the head reads for n commands of one state, as texts (encoded once, cached) and scalars."""

    commands: list[str]
    context: tuple[str, str, str]  # next open instruction, observation, last action ("" = none)
    scalars: list[list[float]]  # (n, N_SCALARS)


class TrainablePolicy(SeededPolicy):
    """A decision node `(state) -> {"action": str}` with `propose(state, k)`; see module docstring."""

    def __init__(self, head: Any, card: dict[str, Any], temperature: float | None = None, seed: int | None = 0,
                 encoder: MiniLM | None = None) -> None:
        self.head = head.eval()
        self.card = card
        self.temperature = check_temperature(card.get("temperature", 1.0) if temperature is None else temperature)
        self.seeds = StateSeeds(seed)
        self.stats = PolicyStats()
        self.base: MiniLMPolicy = minilm_policy(encoder=encoder)
        self.name = f"{card.get('name', 'minilm-head')}@{str(card.get('hash', 'untrained'))[:12]}"

    # -- features -------------------------------------------------------------------

    @property
    def encoder(self) -> MiniLM:
        return self.base.encoder

    @property
    def version(self) -> dict[str, Any]:
        """What a run records about the policy that produced it."""
        return {"name": self.card.get("name", "minilm-head"), "hash": self.card.get("hash"), "round": self.card.get("round")}

    def parts(self, state: Mapping[str, Any], commands: Sequence[str]) -> Parts:
        import torch

        commands = list(commands)
        base = self.base.scores({**state, "actions": commands})
        sentences = _sentences(objective(state)) or [""]
        done = [a for a, _ in recent_history(state, 1_000_000) if a]
        last = done[-1] if done else ""
        observation = str(state.get("observation") or "")
        vec = self.encoder.embed(sentences + [observation, last] + done + commands)
        s = len(sentences)
        sent, obs_v, last_v = vec[:s], vec[s], vec[s + 1]
        done_v, cmd_v = vec[s + 2 : s + 2 + len(done)], vec[s + 2 + len(done) :]
        open_ = torch.ones(s, dtype=torch.bool)
        if done:
            best = (done_v @ sent.T).max(1)  # the instruction each played command answered, if any
            open_[best.indices[best.values >= self.base.close_at]] = False
        nxt = int(open_.nonzero()[0]) if bool(open_.any()) else s - 1
        played = {c: done.count(c) for c in set(done)}
        steps = len(done)
        cos_next, cos_obs = (cmd_v @ sent[nxt]).tolist(), (cmd_v @ obs_v).tolist()
        cos_last = (cmd_v @ last_v).tolist() if last else [0.0] * len(commands)
        scalars = [[base[i], cos_next[i], cos_obs[i], cos_last[i], math.log1p(played.get(c, 0)), float(c == last),
                    steps / 50.0, 1.0] for i, c in enumerate(commands)]
        return Parts(commands, (sentences[nxt], observation, last), scalars)

    def tensors(self, parts: Parts) -> tuple[Any, Any, Any]:
        import torch

        vec = self.encoder.embed(parts.commands + [t for t in parts.context])
        n = len(parts.commands)
        ctx = vec[n:].clone()
        if not parts.context[2]:
            ctx[2] = 0.0  # no previous action
        return vec[:n], ctx.unsqueeze(0).expand(n, -1, -1), torch.tensor(parts.scalars, dtype=torch.float32)

    def scores(self, state: Mapping[str, Any], commands: Sequence[str] | None = None) -> list[float]:
        import torch

        with torch.inference_mode():
            return self.head(*self.tensors(self.parts(state, commands or admissible(state)))).tolist()

    # -- the policy -----------------------------------------------------------------

    def _choose(self, state: Mapping[str, Any], k: int, rng: random.Random) -> list[str]:
        commands = admissible(state)
        self.stats.calls += 1
        self.stats.samples += k
        return sample(commands, self.scores(state, commands), self.temperature, k, rng)

    def __call__(self, state: Mapping[str, Any]) -> dict[str, str]:
        return {"action": self._choose(state, 1, self.seeds.rng(state))[0]}

    async def propose(self, state: Mapping[str, Any], k: int) -> list[dict[str, str]]:
        rng = self.seeds.rng(state)  # here, not in the thread: see StateSeeds
        return [{"action": a} for a in await asyncio.to_thread(self._choose, state, k, rng)]

    def __repr__(self) -> str:
        return self.name

    # -- folders ----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write head.safetensors and policy.json; the card's `hash` is the content hash of both."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        save_file(weights, str(path / WEIGHTS), metadata={"format": "pt", "kind": KIND})
        card = {k: v for k, v in self.card.items() if k != "hash"}
        card["hash"] = content_hash(path / WEIGHTS, card)
        (path / CARD).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        self.card = card
        self.name = f"{card.get('name', 'minilm-head')}@{card['hash'][:12]}"
        return path


def content_hash(weights: Path, card: Mapping[str, Any]) -> str:
    """sha256 over the weight bytes and the settings that change behaviour (not metrics or dates)."""
    h = hashlib.sha256(weights.read_bytes())
    h.update(json.dumps({k: card.get(k) for k in ("kind", "hidden", "features", "temperature")}, sort_keys=True).encode())
    return h.hexdigest()


def is_policy_folder(path: str | Path) -> bool:
    return (Path(path) / CARD).is_file() and (Path(path) / WEIGHTS).is_file()


def trainable_policy(hidden: int = 128, temperature: float = 1.0, seed: int | None = 0, name: str = "minilm-head",
                     encoder: MiniLM | None = None, features: str = "full") -> TrainablePolicy:
    """An untrained head: it ranks exactly like `minilm_policy()` until `fit` moves it."""
    import torch
    from safetensors.torch import save

    torch.manual_seed(0)  # the first layer's init: the same untrained policy every time
    head = _head(hidden, features)
    card: dict[str, Any] = {"kind": KIND, "name": name, "hidden": hidden, "features": features, "temperature": temperature, "round": 0}
    weights = save({k: v.detach().contiguous() for k, v in head.state_dict().items()})
    card["hash"] = hashlib.sha256(weights + json.dumps([hidden, features, temperature]).encode()).hexdigest()
    return TrainablePolicy(head, card, temperature, seed, encoder)


def load_trainable_policy(path: str | Path, temperature: float | None = None, seed: int | None = 0,
                          encoder: MiniLM | None = None) -> TrainablePolicy:
    """A saved head; a folder without policy.json + head.safetensors, or of another kind, is a one-line error."""
    from safetensors.torch import load_file

    path = Path(path)
    if not is_policy_folder(path):
        raise ConfigError(f"{path}: not a trainable policy folder (needs {CARD} and {WEIGHTS}); train one with `trajgraph train policy`")
    try:
        card = json.loads((path / CARD).read_text())
    except ValueError as exc:
        raise ConfigError(f"{path / CARD}: not valid JSON ({exc})") from None
    if card.get("kind") != KIND:
        raise ConfigError(f"{path}: holds a {card.get('kind')!r} model, not a {KIND!r} policy")
    head = _head(int(card["hidden"]), str(card.get("features", "full")))
    try:
        head.load_state_dict(load_file(str(path / WEIGHTS)))
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"{path / WEIGHTS}: weights do not fit the card ({str(exc).splitlines()[0]})") from None
    return TrainablePolicy(head, card, temperature, seed, encoder)


__all__ = ["TrainablePolicy", "Parts", "trainable_policy", "load_trainable_policy", "is_policy_folder", "content_hash", "KIND"]
