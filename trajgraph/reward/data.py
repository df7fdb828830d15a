"""Training sets for the reward model, read from a trajgraph store. No torch here.

Three kinds of label, following the store's search-data conventions:

- **outcome** (an outcome reward model): every decision step of a run with a
  known `Run.outcome` is labelled with that outcome;
- **mc** (a process reward model, as in IPR and RRO): a search node's `value`,
  the mean final reward of the rollouts through it, labels the prefix that
  reaches it (its ancestors' action/observation turns);
- **pairs**: `pairs` rows (RRO / MCTS siblings) become (chosen, rejected) items
  that share a prefix, for a pairwise logistic loss.

A decision step yields two items: the prefix *with* the step's action as the
candidate (what RRO scores before acting) and the prefix *after* its
observation (what MCTS scores for a new node), so one model serves both uses.
Identical items of one task are merged: their mean label is a Monte Carlo
estimate of the prefix's value and their count is their weight.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.render import render_action, render_task, steps_to_turns
from trajgraph.reward.base import RewardItem
from trajgraph.store import Store
from trajgraph.store.transfer import lineages
from trajgraph.trajectory import Run, SearchNode

LABELS = ("outcome", "mc", "pairs")
FORMS = ("candidate", "state")


@dataclass(frozen=True)
class Example:
    """A pointwise example: `label` in [0, 1] (mean over `count` merged copies)."""

    item: RewardItem
    label: float
    group: str  # task id: train/validation split unit
    count: int = 1
    positives: int = 0  # copies whose raw label reached the success threshold (for AUC)
    source: str = "outcome"


@dataclass(frozen=True)
class PairExample:
    """Two continuations of one prefix; `chosen` should score higher."""

    chosen: RewardItem
    rejected: RewardItem
    group: str
    source: str = "pairs"


@dataclass(frozen=True)
class Dataset:
    """What `train` fits: pointwise examples and preference pairs, labels scaled to [0, 1]."""

    examples: tuple[Example, ...] = ()
    pairs: tuple[PairExample, ...] = ()
    threshold: float = 0.5  # raw label at or above which a step counts as a success
    scale: tuple[float, float] = (0.0, 1.0)  # raw (lo, hi) mapped to (0, 1)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        return sorted({e.group for e in self.examples} | {p.group for p in self.pairs})

    def __len__(self) -> int:
        return len(self.examples) + len(self.pairs)

    def subset(self, groups: Iterable[str]) -> Dataset:
        keep = set(groups)
        return Dataset(
            tuple(e for e in self.examples if e.group in keep),
            tuple(p for p in self.pairs if p.group in keep),
            self.threshold,
            self.scale,
            self.stats,
        )

    def split(self, val_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """(train, validation) with no task in both; the validation set may be empty."""
        train_groups, val_groups = split_groups(self.groups, val_fraction, seed)
        return self.subset(train_groups), self.subset(val_groups)


def split_groups(groups: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Shuffle task ids with `seed`; the first `val_fraction` of them validate (at least one, never all)."""
    groups = sorted(groups)
    if val_fraction <= 0 or len(groups) < 2:
        return groups, []
    random.Random(seed).shuffle(groups)
    n_val = min(len(groups) - 1, max(1, round(len(groups) * val_fraction)))
    return sorted(groups[n_val:]), sorted(groups[:n_val])


# -- reading the store ------------------------------------------------------------------


def build_dataset(
    store: Store | str,
    labels: str | Sequence[str] = "auto",
    *,
    threshold: float = 0.5,
    decision_nodes: Sequence[str] | None = None,
    outcome: Callable[[Run], float | None] | None = None,
    forms: Sequence[str] = FORMS,
    tags: Sequence[str] = (),
) -> Dataset:
    """Collect examples of the requested label kinds ("auto": every kind the store has).

    `tags`: only runs that carry every one of them, with their rollouts (a search's
    children) and the pairs they wrote: a value model of the training split must not
    learn the validation and test searches it will later be measured on.

    `outcome(run)` overrides where a run's final reward is read from (default
    `run.outcome`); `threshold` (in raw reward units) splits success from failure
    for AUC. Rewards outside [0, 1] are min-max scaled over the whole set.
    `forms` picks the item forms of a step: "candidate" (prefix + the step's
    action) and/or "state" (prefix through the step's observation).
    """
    kinds = _kinds(labels)
    if not forms or any(f not in FORMS for f in forms):
        raise ConfigError(f"forms={list(forms)!r}: choose from {list(FORMS)}")
    store = store if isinstance(store, Store) else Store(store, readonly=True)
    runs = store.runs(newest_first=False)
    if tags:
        runs = _lineages_tagged(runs, set(tags))
    by_id = {r.id: r for r in runs}
    raw: list[tuple[str, RewardItem, float, str]] = []  # (group, item, raw label, source)
    if "outcome" in kinds:
        raw += outcome_items(store, runs, by_id, decision_nodes, outcome)
    if "mc" in kinds:
        raw += mc_items(store, runs, by_id)
    pairs = pair_examples(store, by_id, only_these_runs=bool(tags)) if "pairs" in kinds else []
    raw = [r for r in raw if ("candidate" if r[1].action is not None else "state") in forms]
    if not raw and not pairs:
        looked = {"outcome": "runs with an outcome", "mc": "search nodes with a value", "pairs": "preference pairs"}
        which = f" among runs tagged {', '.join(tags)}" if tags else ""
        raise ConfigError(f"nothing to train on in {store.path}{which}: no {', no '.join(looked[k] for k in kinds)}")
    lo = min([0.0] + [v for _, _, v, _ in raw])
    hi = max([1.0] + [v for _, _, v, _ in raw])
    merged: dict[tuple[str, RewardItem, str], list[float]] = {}
    for group, item, value, source in raw:
        merged.setdefault((group, item, source), []).append(value)
    # in content order, not the store's: runs written by concurrent searches land in any
    # order, and a fixed seed must give the same model from the same trajectories
    examples = tuple(
        Example(
            item=item,
            label=(sum(sorted(values)) / len(values) - lo) / (hi - lo),
            group=group,
            count=len(values),
            positives=sum(v >= threshold for v in values),
            source=source,
        )
        for (group, item, source), values in sorted(merged.items(), key=lambda kv: (kv[0][0], kv[0][2], _item_key(kv[0][1])))
    )
    pairs = sorted(pairs, key=lambda p: (p.group, p.source, _item_key(p.chosen), _item_key(p.rejected)))
    stats = {"raw_items": len(raw), "examples": len(examples), "pairs": len(pairs), "kinds": list(kinds)}
    return Dataset(examples, tuple(pairs), threshold, (lo, hi), stats)


def _lineages_tagged(runs: Sequence[Run], tags: set[str]) -> list[Run]:
    """The runs carrying every tag in `tags`, and every run below one of them."""
    kept = {r.id for r in lineages(runs, lambda r: tags <= set(r.tags))}
    return [r for r in runs if r.id in kept]


def _item_key(item: RewardItem) -> tuple[str, tuple[tuple[str, str], ...], str]:
    return (item.task, item.turns, item.action or "")


def _kinds(labels: str | Sequence[str]) -> tuple[str, ...]:
    wanted = LABELS if labels == "auto" else ((labels,) if isinstance(labels, str) else tuple(labels))
    unknown = [k for k in wanted if k not in LABELS]
    if unknown or not wanted:
        raise ConfigError(f"labels={labels!r}: choose 'auto' or any of {list(LABELS)}")
    return wanted


def task_text(run: Run, by_id: dict[str, Run]) -> str:
    """The task as the model reads it: the run's input, else its parent's (rollouts of a search)."""
    seen = set()
    r: Run | None = run
    while r is not None and r.id not in seen:
        if r.input is not None:
            return render_task(r.input)
        seen.add(r.id)
        r = by_id.get(r.parent_id) if r.parent_id else None
    return run.task or ""


def outcome_items(
    store: Store,
    runs: Sequence[Run],
    by_id: dict[str, Run],
    decision_nodes: Sequence[str] | None = None,
    outcome: Callable[[Run], float | None] | None = None,
) -> list[tuple[str, RewardItem, float, str]]:
    """Both items of every decision step of every run whose final reward is known."""
    out = []
    for run in runs:
        value = outcome(run) if outcome is not None else run.outcome
        if value is None or run.kind == "search":  # a search's own row holds no steps of one trajectory
            continue
        turns = steps_to_turns(store.steps(run.id), decision_nodes)
        task = task_text(run, by_id)
        group = run.task or task
        for k, (action, _) in enumerate(turns):
            out.append((group, RewardItem(task, tuple(turns[:k]), action), float(value), "outcome"))
            out.append((group, RewardItem(task, tuple(turns[: k + 1])), float(value), "outcome"))
    return out


def mc_items(store: Store, runs: Sequence[Run], by_id: dict[str, Run]) -> list[tuple[str, RewardItem, float, str]]:
    """Every search node with a backed-up value (or a terminal outcome), as both item forms."""
    out = []
    for run in runs:
        if run.kind != "search":
            continue
        nodes = {n.id: n for n in store.search_nodes(run.id)}
        task = task_text(run, by_id)
        group = run.task or task
        for node in nodes.values():
            value = node.value if node.value is not None else (node.outcome if node.terminal else None)
            if value is None or node.parent_id is None:
                continue
            turns = _node_turns(node, nodes)
            if turns is None:
                continue
            out.append((group, RewardItem(task, turns[:-1], turns[-1][0]), float(value), "mc"))
            out.append((group, RewardItem(task, turns), float(value), "mc"))
    return out


def _node_turns(node: SearchNode, nodes: dict[int, SearchNode]) -> tuple[tuple[str, str], ...] | None:
    """(action_text, observation) of the node and its ancestors, root excluded; None if the chain breaks."""
    chain = []
    current: SearchNode | None = node
    while current is not None and current.parent_id is not None:
        chain.append((current.action_text or render_action(current.action), current.observation))
        if len(chain) > len(nodes):  # a cycle: damaged tree
            return None
        current = nodes.get(current.parent_id)
    if current is None:
        return None
    return tuple(reversed(chain))


def pair_examples(store: Store, by_id: dict[str, Run], only_these_runs: bool = False) -> list[PairExample]:
    """Pairs whose prompt is {"task", "history"}; others (message prompts) are skipped, and with
    `only_these_runs` those written by runs not in `by_id`."""
    out = []
    for pair in store.pairs():
        if only_these_runs and pair.run_id not in by_id:
            continue
        prompt = pair.prompt
        if not isinstance(prompt, dict) or "task" not in prompt:
            continue
        history = tuple((str(a), str(o)) for a, o in (prompt.get("history") or ()))
        task = str(prompt["task"])
        chosen, rejected = _candidate_text(pair.chosen), _candidate_text(pair.rejected)
        if chosen is None or rejected is None or chosen == rejected:
            continue
        run = by_id.get(pair.run_id)
        group = pair.task or (run.task if run is not None and run.task else None) or task
        out.append(PairExample(RewardItem(task, history, chosen), RewardItem(task, history, rejected), group, pair.source))
    return out


def _candidate_text(value: Any) -> str | None:
    if isinstance(value, dict):
        if value.get("text"):
            return str(value["text"])
        if "action" in value:
            return render_action(value["action"])
        return None
    return None if value is None else render_action(value)


__all__ = ["Example", "PairExample", "Dataset", "build_dataset", "split_groups", "task_text", "LABELS", "FORMS"]
