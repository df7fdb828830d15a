"""Policy targets from every node a search expanded (expert iteration's "improved policy").

AlphaZero and ExIt (Anthony et al. 2017) train the policy toward the search's
distribution at each searched state, not only toward the actions of the
trajectories that happened to succeed. A stored search holds what is needed:
its tree (`SearchNode` rows: parent, action, score, value, visits, outcome)
and its finished rollouts (runs of kind "rollout" whose metadata names their
leaf), whose replayed steps give the exact state the decision node saw at
every node on the way.

For every internal node P whose state is known and every child c of P:

- Q(c): the best (`backup="max"`, the default: in a deterministic environment
  what was reached below c can be reached again) or the mean (`backup="mean"`)
  final outcome of the finished trajectories below c (Monte Carlo values:
  best-of-n's per first-differing action, MCTS's rollouts, RRO's); where none
  finished below c, MCTS's backed-up `value` (if visited)
  or the score the search gave c (RRO's reward-model scores);
- N(c): how many finished trajectories went through c (MCTS visits when larger);
- V(P): the mean outcome of everything below P, the node's value.

Failed searches and partial outcomes count like successful ones: a graded
outcome makes every rollout informative. The same state reached in several
nodes or searches is merged by content (`state_key`), count-weighted.

`SoftTarget.distribution(kind, temperature)` turns Q (softmax of Q/T) or N
(visit counts^(1/T)) into the target; `weight` is the node's advantage spread
(how much choosing well matters there). `lm_rows` gives the same data to
language models as weighted SFT rows and DPO pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.export.read import snapshot
from trajgraph.learn.data import run_decisions, state_key
from trajgraph.store import Store
from trajgraph.trajectory import Run, SearchNode

TARGET_KINDS = ("q", "visits")
BACKUPS = ("max", "mean")
WEIGHTS = ("spread", "advantage", "none")


@dataclass
class SoftTarget:
    """At `state`, the searched actions with their values (Q), counts (N) and the node's value V."""

    state: dict[str, Any]
    q: dict[str, float]
    n: dict[str, float]
    value: float
    task: str | None
    run_id: str
    sources: set[str] = field(default_factory=set)

    def distribution(self, kind: str = "q", temperature: float = 0.1) -> dict[str, float]:
        """The improved policy over the searched actions: softmax(Q / T) or N^(1/T), normalised."""
        if kind not in TARGET_KINDS:
            raise ConfigError(f"target kind must be one of {', '.join(TARGET_KINDS)}, got {kind!r}")
        if temperature <= 0:
            best = max(self.q.values())
            top = [a for a, v in self.q.items() if v == best]
            return {a: (1.0 / len(top) if a in top else 0.0) for a in self.q}
        if kind == "visits":
            logits = {a: math.log(max(self.n.get(a, 0.0), 1e-9)) / temperature for a in self.q}
        else:
            logits = {a: v / temperature for a, v in self.q.items()}
        m = max(logits.values())
        exp = {a: math.exp(v - m) for a, v in logits.items()}
        z = sum(exp.values())
        return {a: e / z for a, e in exp.items()}

    def weight(self, kind: str = "spread") -> float:
        """How much the choice matters here: the spread max Q - min Q, or the best action's
        advantage over the node's value (max Q - V); "none": 1."""
        if kind not in WEIGHTS:
            raise ConfigError(f"target weight must be one of {', '.join(WEIGHTS)}, got {kind!r}")
        if kind == "none":
            return 1.0
        best = max(self.q.values())
        return best - (min(self.q.values()) if kind == "spread" else self.value)

    @property
    def best(self) -> str:
        return max(sorted(self.q), key=lambda a: self.q[a])


@dataclass
class _Acc:
    state: dict[str, Any]
    task: str | None
    run_id: str
    q: dict[str, list[float]] = field(default_factory=dict)  # action -> [sum of Q*N, sum of N]
    v: list[float] = field(default_factory=lambda: [0.0, 0.0])
    best: dict[str, float] = field(default_factory=dict)  # action -> best finished outcome below it
    sources: set[str] = field(default_factory=set)


def _searches(db: Any, tags: Sequence[str], tasks: set[str] | None) -> list[Run]:
    return [r for r in db.runs(kind="search", newest_first=False)
            if (tasks is None or r.task in tasks) and all(t in r.tags for t in tags)]


def search_targets(store: Store | str | Path, *, tags: Sequence[str] = (), tasks: Iterable[str] | None = None,
                   min_actions: int = 2, backup: str = "max") -> list[SoftTarget]:
    """One `SoftTarget` per distinct searched state with at least `min_actions` valued actions.

    tags: only searches carrying all of them (e.g. "split:train"); tasks: only these task ids;
    backup: "max" or "mean" over the finished trajectories below each action (see module docstring)."""
    if backup not in BACKUPS:
        raise ConfigError(f"backup must be one of {', '.join(BACKUPS)}, got {backup!r}")
    wanted = set(tasks) if tasks is not None else None
    merged: dict[str, _Acc] = {}
    with snapshot(store) as db:
        for search in _searches(db, tags, wanted):
            _read_tree(db, search, merged)
    out = []
    for acc in merged.values():
        q = {a: (acc.best[a] if backup == "max" and a in acc.best else s / n) for a, (s, n) in acc.q.items() if n > 0}
        if len(q) < min_actions:
            continue
        value = acc.v[0] / acc.v[1] if acc.v[1] > 0 else sum(q.values()) / len(q)
        out.append(SoftTarget(acc.state, q, {a: acc.q[a][1] for a in q}, value, acc.task, acc.run_id, acc.sources))
    return sorted(out, key=lambda t: (str(t.task), state_key(t.state)))


def _read_tree(db: Any, search: Run, merged: dict[str, _Acc]) -> None:
    nodes = {n.id: n for n in db.search_nodes(search.id)}
    if not nodes:
        return
    children: dict[int, list[SearchNode]] = {}
    for n in nodes.values():
        if n.parent_id is not None and not n.invalid:
            children.setdefault(n.parent_id, []).append(n)
    states: dict[int, dict[str, Any]] = {}
    for run in db.runs(parent_id=search.id, newest_first=False):
        leaf = run.metadata.get("search_node") if isinstance(run.metadata, Mapping) else None
        if run.kind != "rollout" or not isinstance(leaf, int) or leaf not in nodes:
            continue
        path = _path(nodes, leaf)
        for node, (state, _action) in zip(path, run_decisions(run, db.steps(run.id))):
            states.setdefault(node.id, state)
    below = _finished_below(nodes, children)
    optimizer = str(search.metadata.get("optimizer") or "search") if isinstance(search.metadata, Mapping) else "search"
    for pid, state in states.items():
        if pid not in children:
            continue
        key = state_key(state)
        acc = merged.setdefault(key, _Acc(state, search.task, search.id))
        acc.sources.add(optimizer)
        total, count, _ = below.get(pid, (0.0, 0, -math.inf))
        acc.v[0] += total
        acc.v[1] += count
        for c in children[pid]:
            text = c.action_text
            if not text:
                continue
            s, k, b = below.get(c.id, (0.0, 0, -math.inf))
            if k:
                q, n = s / k, float(max(k, c.visits))
                acc.best[text] = max(acc.best.get(text, -math.inf), b)
            elif c.visits and c.value is not None:
                q, n = float(c.value), float(c.visits)
            elif c.score is not None:
                q, n = float(c.score), 1.0
            else:
                continue
            slot = acc.q.setdefault(text, [0.0, 0.0])
            slot[0] += q * n
            slot[1] += n


def _path(nodes: Mapping[int, SearchNode], leaf: int) -> list[SearchNode]:
    out = []
    node: SearchNode | None = nodes[leaf]
    while node is not None:
        out.append(node)
        node = nodes.get(node.parent_id) if node.parent_id is not None else None
    return out[::-1]


def _finished_below(nodes: Mapping[int, SearchNode], children: Mapping[int, list[SearchNode]]) -> dict[int, tuple[float, int, float]]:
    """node id -> (sum of outcomes, count, best outcome) over the finished, valid trajectories in its subtree."""
    out: dict[int, tuple[float, int, float]] = {}
    for n in sorted(nodes.values(), key=lambda n: -n.depth):  # children before parents
        own = n.terminal and not n.invalid and n.outcome is not None
        s, k, b = (float(n.outcome or 0.0), 1, float(n.outcome or 0.0)) if own else (0.0, 0, -math.inf)
        for c in children.get(n.id, []):
            cs, ck, cb = out.get(c.id, (0.0, 0, -math.inf))
            s, k, b = s + cs, k + ck, max(b, cb)
        out[n.id] = (s, k, b)
    return out


def lm_rows(targets: Sequence[SoftTarget], *, margin: float = 0.1, weight: str = "spread") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The same targets for a language model: weighted SFT rows (state, best action, weight) and
    DPO pairs (state, better action, worse action) where Q differs by at least `margin`."""
    sft, dpo = [], []
    for t in targets:
        w = t.weight(weight)
        if w <= 0:
            continue
        best = t.best
        sft.append({"state": t.state, "action": best, "weight": w, "q": t.q[best], "task": t.task})
        for a, v in sorted(t.q.items()):
            if a != best and t.q[best] - v >= margin:
                dpo.append({"state": t.state, "chosen": best, "rejected": a, "margin": t.q[best] - v, "task": t.task})
    return sft, dpo


def write_lm_rows(store: Store | str | Path, folder: str | Path, *, tags: Sequence[str] = (), tasks: Iterable[str] | None = None,
                  margin: float = 0.1, weight: str = "spread") -> tuple[Path, Path]:
    """Write `sft.jsonl` (messages + weight) and `dpo.jsonl` (prompt, chosen, rejected) from the
    store's search targets, in the chat format the LM policies read (`build_messages`)."""
    import json

    from trajgraph.policies.prompt import build_messages

    sft, dpo = lm_rows(search_targets(store, tags=tags, tasks=tasks), margin=margin, weight=weight)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "sft.jsonl", "w") as f:
        for r in sft:
            messages = build_messages(r["state"]) + [{"role": "assistant", "content": r["action"]}]
            f.write(json.dumps({"messages": messages, "weight": r["weight"], "task": r["task"]}) + "\n")
    with open(folder / "dpo.jsonl", "w") as f:
        for p in dpo:
            f.write(json.dumps({"prompt": build_messages(p["state"]), "chosen": [{"role": "assistant", "content": p["chosen"]}],
                                "rejected": [{"role": "assistant", "content": p["rejected"]}], "margin": p["margin"],
                                "task": p["task"]}) + "\n")
    return folder / "sft.jsonl", folder / "dpo.jsonl"


__all__ = ["SoftTarget", "search_targets", "lm_rows", "write_lm_rows", "TARGET_KINDS", "WEIGHTS", "BACKUPS"]
