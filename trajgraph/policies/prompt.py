"""What every offline policy shares: the prompt, command matching, sampling, stats.

A policy sees an env-loop state (`trajgraph.envloop.EnvState`): `task`
(or `objective`), `observation`, `actions` (the admissible commands) and
`history` ([{"action", "observation", ...}]). It must answer with one of
`actions`, whatever its model said: matching lives here so all three policies
map and count invalid output the same way.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from trajgraph.errors import ConfigError

SYSTEM_PROMPT = (
    "You are playing a text adventure game. Read the objective and what you see, "
    "then reply with exactly one command copied from the list of admissible commands, and nothing else."
)


@dataclass
class PolicyStats:
    """Counters every policy keeps; `invalid_outputs` are model replies that were not
    an admissible command verbatim (they were mapped to the closest one)."""

    calls: int = 0  # model invocations (one node call or one propose(k) batch)
    samples: int = 0  # actions returned
    tokens: int = 0  # tokens the model read and wrote
    invalid_outputs: int = 0
    fallbacks: int = 0  # invalid outputs with no overlap at all: a random admissible command

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class StateSeeds:
    """Random streams that depend on the state asked about, not on the order of asking.

    One policy object serves many concurrent searches (it holds the model); a
    single shared `random.Random` would hand out numbers in whatever order the
    threads and searches happened to arrive, so the same seed gave a different
    benchmark every time. Here call n on a given state draws from a stream seeded
    by (seed, state, n): the same seed replays the same choices. `view()` gives
    one search its own call counts over the same seed.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._asked: Counter[str] = Counter()
        self._lock = threading.Lock()

    def rng(self, state: Mapping[str, Any]) -> random.Random:
        if self.seed is None:
            return random.Random()
        key = state_key(state)
        with self._lock:
            n = self._asked[key]
            self._asked[key] += 1
        return random.Random(f"{self.seed}|{key}|{n}")  # a str seed is hashed with SHA-512: stable across processes

    def view(self) -> StateSeeds:
        return StateSeeds(self.seed)


P = TypeVar("P", bound="SeededPolicy")


class SeededPolicy:
    """A model policy that one bench shares across searches: draws from `self.seeds`."""

    seeds: StateSeeds

    def view(self: P) -> P:
        """The same model and counters, with this search's own random streams (see StateSeeds)."""
        other = copy.copy(self)
        other.seeds = self.seeds.view()
        return other


def state_key(state: Mapping[str, Any]) -> str:
    """What a policy decides from: objective, the actions so far, the observation, the choices."""
    history = [a for a, _ in recent_history(state, 1_000_000)]
    text = json.dumps([objective(state), history, str(state.get("observation") or ""), list(state.get("actions") or [])], default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def objective(state: Mapping[str, Any]) -> str:
    return str(state.get("objective") or state.get("task") or "")


def admissible(state: Mapping[str, Any]) -> list[str]:
    """The admissible commands, de-duplicated in order; a policy with none to choose from is a caller bug."""
    actions = list(dict.fromkeys(str(a) for a in state.get("actions") or []))
    if not actions:
        raise ConfigError("state has no admissible 'actions' to choose from; a policy needs at least one")
    return actions


def recent_history(state: Mapping[str, Any], window: int) -> list[tuple[str, str]]:
    steps = list(state.get("history") or [])[-window:] if window > 0 else []
    return [(str(s.get("action") or ""), str(s.get("observation") or "")) for s in steps if isinstance(s, Mapping)]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# One worked turn before the real one: SmolLM2-135M otherwise echoes the observation
# (0/25 verbatim commands on choice_task); with it, 19/25 were verbatim, and ranking by
# log-probability picked the right command 50% of the time instead of 40% (random: 15%).
_EXAMPLE = (
    {
        "task": "Put the silver coin in the purse.",
        "observation": "You are in the shop. You are carrying a silver coin. A purse lies on the floor.",
        "actions": ["go east", "put silver coin in purse", "look", "drop silver coin"],
    },
    "put silver coin in purse",
)


def _user_turn(state: Mapping[str, Any], window: int, obs_chars: int) -> str:
    lines = [f"Objective: {_clip(objective(state), 2 * obs_chars)}", ""]
    past = recent_history(state, window)
    if past:
        lines.append("Recent steps:")
        lines += [f"> {a}\n{_clip(o, obs_chars // 2)}" for a, o in past]
        lines.append("")
    lines += ["Now you see:", _clip(str(state.get("observation") or ""), obs_chars), "", "Admissible commands:"]
    lines += [f"- {a}" for a in admissible(state)]
    lines += ["", "Reply with one command from the list."]
    return "\n".join(lines)


def build_messages(state: Mapping[str, Any], window: int = 3, obs_chars: int = 400, example: bool = True) -> list[dict[str, str]]:
    """Chat messages for one decision: objective, the last `window` steps, what is seen now, the commands.

    Observations are whitespace-collapsed and clipped so a 135M model's prompt stays short
    (prefill time grows with it; its useful context is small anyway). `example` prepends
    one worked turn (see _EXAMPLE)."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    if example:
        messages += [{"role": "user", "content": _user_turn(_EXAMPLE[0], 0, obs_chars)}, {"role": "assistant", "content": _EXAMPLE[1]}]
    return messages + [{"role": "user", "content": _user_turn(state, window, obs_chars)}]


# -- mapping a reply to an admissible command ------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def clean_reply(text: str) -> str:
    """The command a model most likely meant: first non-empty line, without a prompt
    marker, list bullet, numbering, quotes or a 'Command:' label."""
    for line in text.splitlines():
        line = line.strip().strip("`\"'").strip()
        line = re.sub(r"^(>|-|\*|\d+[.)]|command\s*:|answer\s*:)\s*", "", line, flags=re.I).strip().strip("`\"'.").strip()
        if line:
            return line
    return ""


def match_command(reply: str, commands: Sequence[str]) -> tuple[str | None, str]:
    """Map a model reply to an admissible command: exact, then prefix/substring, then token overlap.

    Returns (command, how) with how in {"exact", "prefix", "substring", "overlap", "none"};
    command is None only when nothing overlaps. Ties go to the longest command (the more specific)."""
    said = _norm(clean_reply(reply))
    normed = [(_norm(c), c) for c in commands]
    for n, c in normed:
        if n == said:
            return c, "exact"
    if not said:
        return None, "none"
    longest = sorted(normed, key=lambda nc: -len(nc[0]))
    for n, c in longest:  # the reply went on after a whole command ("go north and then...")
        if n and (said.startswith(n + " ") or n.startswith(said + " ")):
            return c, "prefix"
    for n, c in longest:
        if n and (n in said or said in n):
            return c, "substring"
    words = set(said.split())
    best, best_score = None, 0.0
    for n, c in normed:
        cw = set(n.split())
        if cw and words & cw:
            score = len(words & cw) / len(words | cw)  # Jaccard
            if score > best_score:
                best, best_score = c, score
    return (best, "overlap") if best is not None else (None, "none")


def resolve(reply: str, commands: Sequence[str], stats: PolicyStats, rng: random.Random) -> str:
    """An admissible command for any reply; counts non-verbatim replies as invalid outputs."""
    command, how = match_command(reply, commands)
    if how != "exact":
        stats.invalid_outputs += 1
    if command is None:
        stats.fallbacks += 1
        command = rng.choice(list(commands))
    return command


# -- sampling ----------------------------------------------------------------------


def softmax(scores: Sequence[float], temperature: float) -> list[float]:
    """softmax(score / temperature); temperature 0 puts all mass on the (first) best."""
    if temperature <= 0:
        best = max(range(len(scores)), key=lambda i: scores[i])
        return [1.0 if i == best else 0.0 for i in range(len(scores))]
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


def sample(commands: Sequence[str], scores: Sequence[float], temperature: float, k: int, rng: random.Random) -> list[str]:
    """k draws (with replacement, like k independent policy calls) from softmax(scores / temperature)."""
    return rng.choices(list(commands), weights=softmax(scores, temperature), k=k)


def check_temperature(temperature: float) -> float:
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ConfigError(f"temperature must be a finite number >= 0, got {temperature!r}")
    return float(temperature)
