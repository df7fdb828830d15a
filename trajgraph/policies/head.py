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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajgraph._internal.modelfolder import bounded_int, finite_number
from trajgraph.envloop.statemap import StateMap
from trajgraph.errors import ConfigError

from .minilm_ranker import MiniLM, MiniLMPolicy, _sentences, minilm_policy
from .prompt import PolicyStats, SeededPolicy, StateSeeds, admissible, check_temperature, objective, recent_history, sample

KIND = "trajgraph-minilm-head"
CARD = "policy.json"
WEIGHTS = "head.safetensors"
DIM = 384  # MiniLM-L6 embedding size
N_SCALARS = 8
N_PROGRESS_SCALARS = 10  # features="progress": two more per command (see `TrainablePolicy.parts`)
ACTIONABLE = 0.35  # an instruction some admissible command matches this well can be acted on (greetings score ~0.1-0.2)
BASE_TEMPERATURE = 0.1  # the base policy's sampling temperature: its scores / 0.1 are its logits
# A trained head's logits fit noisy labels (a search's successes include its detours), so its
# softmax at 1.0 is flat: on the demo's TextWorld test games best-of-n on it solved 2/20 at 1.0
# and 7/20 at 0.3 (the base: 6/20), greedy sampling 1/20 and 7/20. Trained heads sample at 0.3.
TRAINED_TEMPERATURE = 0.3


FEATURES = ("full", "scalars", "clause", "progress", "progress-scalars")
_CLAUSE = re.compile(r"[.;!?\n]+|,\s+")
_WORD = re.compile(r"[a-z0-9]+")


def command_clause(observation: str, command: str) -> str:
    """The observation's clause that speaks of `command` (most shared words; the last of equals), or "".

    "right" in "... Around you, left: a hole; right: frozen ice." -> "right: frozen ice": what the
    state says about this action, which a whole-observation embedding blurs (features="clause")."""
    words = set(_WORD.findall(command.lower()))
    if not words:
        return ""
    parts = [p.strip() for p in _CLAUSE.split(observation) if p.strip()]
    best, best_n = "", 0
    for part in parts:
        n = len(words & set(_WORD.findall(part.lower())))
        if n and n >= best_n:
            best, best_n = part, n
    return best


def n_scalars(features: str) -> int:
    """How many scalars per command the head reads with these features."""
    return N_PROGRESS_SCALARS if features.startswith("progress") else N_SCALARS


def progress_pointer(similarity: Any, close_at: float, order_penalty: float = 0.15) -> int:
    """Index of the last instruction the played actions answered, in order (-1: none yet).

    similarity: (actions played, instructions) matches, oldest action first. Each action
    moves the pointer forward to the instruction after it that it matches best (each step
    further counts `order_penalty` less, as instructions come in order), if that match
    reaches `close_at`; off-script actions ("look", "eat kiwi" far below) leave it. Matching
    every action against every instruction instead (features "full"/"clause") never closes
    a greeting ("Hey, thanks for coming over...") or a repeated one ("go east" twice), so the
    "next open instruction" stayed the greeting all game: on the demo's TextWorld test games
    the head could not tell "take carrot" done from to do, and after it played "eat carrot"
    where the walkthrough moves north. (0.15 and clauses: on 20 training games' walkthroughs the
    command nearest the next instruction is the walkthrough's 94% / 96% of the time on other
    steps / moves; 0.05 and whole sentences gave 88% / 54%.)"""
    import torch

    p = -1
    for row in similarity:
        rest = row[p + 1 :]
        if len(rest) == 0:
            break
        j = int((rest - order_penalty * torch.arange(len(rest), dtype=rest.dtype)).argmax())
        if float(rest[j]) >= close_at:
            p += 1 + j
    return p


def _head(hidden: int, features: str = "full", base_weight: float = 1.0 / BASE_TEMPERATURE) -> Any:
    import torch

    if features not in FEATURES:
        raise ConfigError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")

    class Head(torch.nn.Module):
        """(B, 384) command + (B, 3, 384) context embeddings + (B, S) scalars -> (B,) score.

        features="scalars" reads only the scalars (a few hundred weights: less to
        overfit when the store holds a few dozen episodes); "clause" adds a fourth
        context, per command: the observation's clause about it (`command_clause`),
        read as it is and multiplied with the command; "progress" is "clause" with the
        next instruction found by `progress_pointer` and two more scalars."""

        def __init__(self) -> None:
            super().__init__()
            self.full = features in ("full", "clause", "progress")
            self.base_weight = torch.nn.Parameter(torch.tensor(float(base_weight)))
            self.clause = features in ("clause", "progress")
            scalars = n_scalars(features)
            width = (6 if self.clause else 4) * DIM + scalars if self.full else scalars
            self.mlp = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
            last = self.mlp[2]
            assert isinstance(last, torch.nn.Linear)
            torch.nn.init.zeros_(last.weight)  # untrained head == base policy
            torch.nn.init.zeros_(last.bias)

        def forward(self, cmd: Any, ctx: Any, scalars: Any) -> Any:
            # cmd: (B, 384); ctx: (B, 3, 384) next instruction, observation, last action (+ the command's clause: (B, 4, 384))
            if not self.full:
                x = scalars
            elif self.clause:
                x = torch.cat([cmd, cmd.unsqueeze(1).mul(ctx[:, :4]).flatten(1), ctx[:, 3], scalars], dim=-1)
            else:
                x = torch.cat([cmd, cmd.unsqueeze(1).mul(ctx[:, :3]).flatten(1), scalars], dim=-1)
            return self.base_weight * scalars[:, 0] + self.mlp(x).squeeze(-1)

    return Head()


@dataclass
class Parts:
    """What the head reads for n commands of one state, as texts (encoded once, cached) and scalars."""

    commands: list[str]
    context: tuple[str, str, str]  # next open instruction, observation, last action ("" = none)
    scalars: list[list[float]]  # (n, N_SCALARS)
    clauses: list[str] | None = None  # per command, the observation's clause about it (features="clause")


# -- the base policy the head starts from ------------------------------------------------

MAX_HIDDEN = 65_536
MAX_PRIOR_SAMPLES = 256


class MiniLMPrior:
    """The library's MiniLM ranker as the base: its similarity scores, weighted 1 / 0.1 at the start."""

    kind = "minilm"
    weight0 = 1.0 / BASE_TEMPERATURE

    def __init__(self, ranker: MiniLMPolicy) -> None:
        self.ranker = ranker

    def logits(self, raw: Mapping[str, Any], view: Mapping[str, Any], commands: Sequence[str]) -> list[float]:
        return self.ranker.scores({**view, "actions": list(commands)})

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": "scores", "weight0": self.weight0}


class NodePrior:
    """The user's own decision node as the base.

    Where the node exposes `scores(state)` (one number per admissible action, sampled
    at its `temperature`, as trajgraph's policies do) the base logits are its scores /
    its temperature; otherwise its samples are the prior: the node is called `samples`
    times and each action gets log((count + 0.5) / (samples + 0.5 n)). Weighted 1 at the start."""

    kind = "node"
    weight0 = 1.0

    def __init__(self, node: Any, state_map: StateMap | None = None, samples: int = 8, name: str | None = None) -> None:
        if not callable(node) and not callable(getattr(node, "scores", None)):
            raise ConfigError(f"the base decision node must be callable (state) -> update, got {type(node).__name__}")
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_PRIOR_SAMPLES:
            raise ConfigError(f"prior samples must be an integer in [1, {MAX_PRIOR_SAMPLES}], got {samples!r}")
        self.node, self.samples = node, samples
        self.state_map = state_map or StateMap()
        self.scorer = getattr(node, "scores", None)
        self.source = "scores" if callable(self.scorer) else "samples"
        self.name = name or str(getattr(node, "name", None) or getattr(node, "__name__", None) or type(node).__name__)

    @property
    def temperature(self) -> float:
        t = getattr(self.node, "temperature", 1.0)
        return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0 else 1.0

    def logits(self, raw: Mapping[str, Any], view: Mapping[str, Any], commands: Sequence[str]) -> list[float]:
        state = {**raw, self.state_map.actions: list(commands)}
        if self.source == "scores":
            assert self.scorer is not None
            scores = list(self.scorer(state))
            if len(scores) != len(commands):
                raise ConfigError(f"base node {self.name!r}: scores() gave {len(scores)} numbers for {len(commands)} actions")
            return [float(x) / self.temperature for x in scores]
        counts = dict.fromkeys(commands, 0)
        for _ in range(self.samples):
            chosen = self.state_map.action_of(self.node(state))
            if chosen in counts:
                counts[chosen] += 1
        total = self.samples + 0.5 * len(commands)
        return [math.log((counts[c] + 0.5) / total) for c in commands]

    def describe(self) -> dict[str, Any]:
        out = {"kind": self.kind, "source": self.source, "weight0": self.weight0, "name": self.name}
        if self.source == "samples":
            out["samples"] = self.samples
        else:
            out["temperature"] = self.temperature
        return out


class TrainablePolicy(SeededPolicy):
    """A decision node `(state) -> {"action": str}` with `propose(state, k)`; see module docstring.

    prior: the base the head starts from (`MiniLMPrior` by default, `NodePrior` for a user's
    own decision node); state_map: where the user's state keeps what the head reads;
    top_k: score only the base's top k admissible actions (large action sets)."""

    def __init__(self, head: Any, card: dict[str, Any], temperature: float | None = None, seed: int | None = 0,
                 encoder: MiniLM | None = None, prior: Any = None, state_map: StateMap | None = None, top_k: int | None = None) -> None:
        self.head = head.eval()
        self.card = card
        self.temperature = check_temperature(card.get("temperature", 1.0) if temperature is None else temperature)
        self.seeds = StateSeeds(seed)
        self.stats = PolicyStats()
        self.base: MiniLMPolicy = minilm_policy(encoder=encoder)
        self.prior = prior if prior is not None else MiniLMPrior(self.base)
        self.state_map = state_map or StateMap()
        self.top_k = check_top_k(top_k)
        self._matches: dict[tuple[str, str], Any] = {}  # (objective, action) -> its match with each instruction
        self.name = f"{card.get('name', 'minilm-head')}@{str(card.get('hash', 'untrained'))[:12]}"

    # -- features -------------------------------------------------------------------

    @property
    def encoder(self) -> MiniLM:
        return self.base.encoder

    @property
    def version(self) -> dict[str, Any]:
        """What a run records about the policy that produced it."""
        return {"name": self.card.get("name", "minilm-head"), "hash": self.card.get("hash"), "round": self.card.get("round")}

    def untrained(self) -> bool:
        """Does the head still score exactly as its base (last layer zero, base weight at its start)?"""
        last = self.head.mlp[2]
        return bool((last.weight == 0).all() and (last.bias == 0).all()) and float(self.head.base_weight.detach()) == float(self.prior.weight0)

    @property
    def reproduces_base(self) -> bool:
        """An untrained head over a user's node is that node: `with_policy` keeps the node itself."""
        return self.prior.kind == "node" and self.untrained()

    def state_view(self, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """The head's view of a user's state (checked by the state map; the env-loop keys as they are)."""
        return state if self.state_map.is_default else self.state_map.view(state)

    def parts(self, state: Mapping[str, Any], commands: Sequence[str], raw: Mapping[str, Any] | None = None,
              base: Sequence[float] | None = None) -> Parts:
        """Features of `commands` at `state` (the policy's view); `raw`: the user's own state, for a node prior."""
        import torch

        commands = list(commands)
        if base is None:
            base = self.prior.logits(state if raw is None else raw, state, commands)
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
        progress = str(self.card.get("features")).startswith("progress")
        extra: list[list[float]] = [[] for _ in commands]
        if progress:  # where in the instructions the agent is (see progress_pointer)
            p = progress_pointer(torch.stack([self.instruction_match(sentences, sent, a) for a in done]), self.base.close_at) if done else -1
            reach = (cmd_v @ sent.T).max(0).values if commands else torch.zeros(s)  # per instruction, its best admissible match
            nxt = next((j for j in range(p + 1, s) if float(reach[j]) >= ACTIONABLE), min(p + 1, s - 1))
            cos_done = (cmd_v @ sent[p]).tolist() if p >= 0 else [0.0] * len(commands)
            # the command's own clause of the next instruction ("go north" -> "try to head north", not "After taking the carrot")
            parts_of_next = [command_clause(sentences[nxt], c) or sentences[nxt] for c in commands]
            cos_part = (cmd_v * self.encoder.embed(parts_of_next)).sum(-1).tolist() if commands else []  # ("go north", "head north"): 0.8
            extra = [[cos_done[i], cos_part[i]] for i in range(len(commands))]
        played = {c: done.count(c) for c in set(done)}
        steps = len(done)
        cos_next, cos_obs = (cmd_v @ sent[nxt]).tolist(), (cmd_v @ obs_v).tolist()
        cos_last = (cmd_v @ last_v).tolist() if last else [0.0] * len(commands)
        scalars = [[base[i], cos_next[i], cos_obs[i], cos_last[i], math.log1p(played.get(c, 0)), float(c == last),
                    steps / 50.0, 1.0, *extra[i]] for i, c in enumerate(commands)]
        clauses = [command_clause(observation, c) for c in commands] if self.card.get("features") in ("clause", "progress") else None
        return Parts(commands, (sentences[nxt], observation, last), scalars, clauses)

    def instruction_match(self, sentences: list[str], sent: Any, action: str) -> Any:
        """(n_sentences,) how well `action` answers each instruction: the better of the cosine with the
        sentence and with the sentence's clause about it ("go north" in "With the kiwi, go to the north."
        is 0.45 against the sentence, 0.8 against "go to the north"). Cached by (objective, action)."""
        key = ("\n".join(sentences), action)
        if key not in self._matches:
            import torch

            a = self.encoder.embed([action])[0]
            own = self.encoder.embed([command_clause(x, action) or x for x in sentences]) @ a
            if len(self._matches) > 50_000:
                self._matches.clear()
            self._matches[key] = torch.maximum(sent @ a, own)
        return self._matches[key]

    def tensors(self, parts: Parts) -> tuple[Any, Any, Any]:
        import torch

        vec = self.encoder.embed(parts.commands + [t for t in parts.context])
        n = len(parts.commands)
        ctx = vec[n:].clone()
        if not parts.context[2]:
            ctx[2] = 0.0  # no previous action
        ctx = ctx.unsqueeze(0).expand(n, -1, -1)
        if parts.clauses is not None:
            cl = self.encoder.embed(parts.clauses) * torch.tensor([[float(bool(c))] for c in parts.clauses])  # no clause: zeros
            ctx = torch.cat([ctx, cl.unsqueeze(1)], dim=1)
        return vec[:n], ctx, torch.tensor(parts.scalars, dtype=torch.float32)

    def scores(self, state: Mapping[str, Any], commands: Sequence[str] | None = None, raw: Mapping[str, Any] | None = None) -> list[float]:
        """Head scores of `commands` (default: every admissible action) at `state` (the policy's view)."""
        import torch

        with torch.inference_mode():
            return self.head(*self.tensors(self.parts(state, commands or admissible(state), raw))).tolist()

    def ranked(self, state: Mapping[str, Any]) -> tuple[list[str], list[float]]:
        """(commands, scores) at a user's state: with `top_k`, only the base's top k are scored by the head."""
        import torch

        view = self.state_view(state)
        commands = admissible(view)
        base = self.prior.logits(state, view, commands)
        if self.top_k is not None and len(commands) > self.top_k:
            keep = sorted(sorted(range(len(commands)), key=lambda i: -base[i])[: self.top_k])
            commands, base = [commands[i] for i in keep], [base[i] for i in keep]
        with torch.inference_mode():
            return commands, self.head(*self.tensors(self.parts(view, commands, state, base))).tolist()

    # -- the policy -----------------------------------------------------------------

    def _choose(self, state: Mapping[str, Any], k: int, rng: random.Random) -> list[str]:
        commands, scores = self.ranked(state)
        self.stats.calls += 1
        self.stats.samples += k
        return sample(commands, scores, self.temperature, k, rng)

    def __call__(self, state: Mapping[str, Any]) -> dict[str, str]:
        return self.state_map.update_of(self._choose(state, 1, self.seeds.rng(self.state_view(state)))[0])

    async def propose(self, state: Mapping[str, Any], k: int) -> list[dict[str, str]]:
        rng = self.seeds.rng(self.state_view(state))  # here, not in the thread: see StateSeeds
        return [self.state_map.update_of(a) for a in await asyncio.to_thread(self._choose, state, k, rng)]

    def __repr__(self) -> str:
        return self.name

    # -- folders ----------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """What changes behaviour besides the weights (what the content hash covers)."""
        return {**{k: self.card.get(k) for k in SETTINGS}, "base": self.prior.describe(),
                "state_map": None if self.state_map.is_default else self.state_map.as_dict()}

    def content_hash(self) -> str:
        return content_hash(self.head.state_dict(), self.settings())

    def save(self, path: str | Path) -> Path:
        """Write head.safetensors and policy.json; the card's `hash` is the content hash of weights and settings."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        save_file(weights, str(path / WEIGHTS), metadata={"format": "pt", "kind": KIND})
        card = {k: v for k, v in self.card.items() if k != "hash"}
        card.update({k: v for k, v in self.settings().items() if k in ("base", "state_map")})
        self.card = card
        card["hash"] = self.content_hash()
        (path / CARD).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        self.name = f"{card.get('name', 'minilm-head')}@{card['hash'][:12]}"
        return path


SETTINGS = ("kind", "hidden", "features", "temperature")


def content_hash(tensors: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """sha256 over each tensor (name, dtype, shape, bytes; names sorted) and the settings as canonical JSON.

    Equal weights and settings give equal hashes, however the file was written
    (safetensors' metadata order varies from one save to the next)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), default=str).encode())
    return h.hexdigest()


def check_top_k(top_k: Any) -> int | None:
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer or None, got {top_k!r}")
    return top_k


def is_policy_folder(path: str | Path) -> bool:
    return (Path(path) / CARD).is_file() and (Path(path) / WEIGHTS).is_file()


def trainable_policy(hidden: int = 128, temperature: float = 1.0, seed: int | None = 0, name: str = "minilm-head",
                     encoder: MiniLM | None = None, features: str = "full", base: Any = None,
                     state_map: StateMap | None = None, top_k: int | None = None, prior_samples: int = 8) -> TrainablePolicy:
    """An untrained head: it ranks exactly like its base until `fit` moves it.

    base: None or "minilm" (the library's MiniLM ranker), or the user's own decision
    node (a callable `(state) -> update`, ideally with `scores(state)` and `temperature`)."""
    import torch

    hidden = bounded_int(hidden, "hidden", "trainable_policy", 1, MAX_HIDDEN)
    check_temperature(temperature)
    torch.manual_seed(0)  # the first layer's init: the same untrained policy every time
    ranker = minilm_policy(encoder=encoder)
    prior = MiniLMPrior(ranker) if base is None or base == "minilm" else NodePrior(base, state_map, prior_samples)
    head = _head(hidden, features, prior.weight0)
    card: dict[str, Any] = {"kind": KIND, "name": name, "hidden": hidden, "features": features, "temperature": temperature, "round": 0}
    policy = TrainablePolicy(head, card, temperature, seed, encoder, prior, state_map, top_k)
    card.update({k: v for k, v in policy.settings().items() if k in ("base", "state_map")})
    card["hash"] = policy.content_hash()
    policy.name = f"{name}@{card['hash'][:12]}"
    return policy


def read_card(path: Path) -> dict[str, Any]:
    """policy.json, checked: a JSON object of this kind with well-typed, bounded settings; else one ConfigError."""
    try:
        card = json.loads((path / CARD).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path / CARD}: not valid JSON ({exc})") from None
    where = str(path / CARD)
    if not isinstance(card, dict):
        raise ConfigError(f"{where}: a policy card must be a JSON object, got {type(card).__name__}")
    if card.get("kind") != KIND:
        raise ConfigError(f"{path}: holds a {card.get('kind')!r} model, not a {KIND!r} policy")
    if "hidden" not in card:
        raise ConfigError(f"{where}: no 'hidden' (the head's width)")
    bounded_int(card["hidden"], "hidden", where, 1, MAX_HIDDEN)
    if card.get("features", "full") not in FEATURES:
        raise ConfigError(f"{where}: 'features' must be one of {', '.join(FEATURES)}, got {card.get('features')!r}")
    finite_number(card.get("temperature", 1.0), "temperature", where)
    if not isinstance(card.get("hash"), str):
        raise ConfigError(f"{where}: no 'hash' (the content hash of the weights and settings)")
    base = card.get("base", {"kind": "minilm"})
    if not isinstance(base, dict) or base.get("kind") not in ("minilm", "node"):
        raise ConfigError(f"{where}: 'base' must say which base the head starts from ({{'kind': 'minilm' | 'node'}}), got {base!r}")
    if card.get("state_map") is not None:
        StateMap.from_dict(card["state_map"])
    return card


def load_trainable_policy(path: str | Path, temperature: float | None = None, seed: int | None = 0,
                          encoder: MiniLM | None = None, base: Any = None, top_k: int | None = None) -> TrainablePolicy:
    """A saved head, checked before use: the card's fields, and the weights against the card's hash.

    A head trained over a user's own decision node (card base "node") needs that node
    as `base` (`tg.with_policy(graph, folder)` passes the graph's)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not is_policy_folder(path):
        raise ConfigError(f"{path}: not a trainable policy folder (needs {CARD} and {WEIGHTS}); train one with `trajgraph train policy`")
    card = read_card(path)
    state_map = StateMap.from_dict(card.get("state_map"))
    spec = card.get("base") or {"kind": "minilm"}
    if spec["kind"] == "node":
        if base is None or base == "minilm":
            raise ConfigError(f"{path}: this head starts from its graph's own decision node ({spec.get('name')!r}); "
                              "load it with tg.with_policy(graph, folder) or pass base=<that node>")
        samples = spec.get("samples", 8)
        prior: Any = NodePrior(base, state_map, bounded_int(samples, "base.samples", str(path / CARD), 1, MAX_PRIOR_SAMPLES), spec.get("name"))
    else:
        prior = MiniLMPrior(minilm_policy(encoder=encoder))
    head = _head(int(card["hidden"]), str(card.get("features", "full")), prior.weight0)
    try:
        weights = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{path / WEIGHTS}: not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    try:
        head.load_state_dict(weights)
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"{path / WEIGHTS}: weights do not fit the card ({str(exc).splitlines()[0]})") from None
    policy = TrainablePolicy(head, card, temperature, seed, encoder, prior, state_map, top_k)
    actual = policy.content_hash()
    if actual != card["hash"]:
        raise ConfigError(f"{path}: the weights and settings hash to {actual[:12]}, but the card says {str(card['hash'])[:12]}; "
                          "the folder was changed after training: retrain or restore it")
    return policy


__all__ = ["TrainablePolicy", "Parts", "MiniLMPrior", "NodePrior", "trainable_policy", "load_trainable_policy", "read_card",
           "is_policy_folder", "content_hash", "check_top_k", "command_clause", "progress_pointer", "n_scalars", "FEATURES", "KIND"]
