"""Comparing two executions of one graph step by step: the first divergence, and a full diff.

Kept apart from replay.py, which re-runs a graph against a recording: this
module only compares steps once they are stored, so it serves `replay()`'s
verdict (`Divergence`), `trajgraph diff` and the viewer alike (`diff`, `RunDiff`).
Steps are matched by their stable keys (trajgraph/recording/instrument.py); updates are
compared as canonical JSON, so `add_messages`' random ids do not count.
"""

from __future__ import annotations

import difflib
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trajgraph.recording.instrument import StepKey, step_keys
from trajgraph.store import Store
from trajgraph.store.json import canonical, canonical_key
from trajgraph.trajectory import Step


@dataclass(frozen=True)
class Divergence:
    """Where a replay first differs from its recording."""

    seq: int | None  # the step's seq in the recording (in the new run for an extra step); None: the output
    node: str
    expected: Any  # the recorded update (canonical JSON), or None for an extra step
    got: Any  # the new update (canonical JSON), or None for a missing step
    reason: str  # "update differs", "error differs", "missing step", "extra step", "output differs"


@dataclass(frozen=True)
class StepDiff:
    """One row of a run diff: a step of `a`, of `b`, or of both."""

    status: str  # "same", "changed", "only_a", "only_b"
    node: str
    a_seq: int | None
    b_seq: int | None
    a_update: Any = None  # canonical JSON
    b_update: Any = None
    a_error: str | None = None
    b_error: str | None = None


@dataclass(frozen=True)
class RunDiff:
    """Two runs side by side, step by step (aligned on namespace, node and task path)."""

    a: str
    b: str
    steps: tuple[StepDiff, ...]
    output_same: bool

    @property
    def identical(self) -> bool:
        return self.output_same and all(s.status == "same" for s in self.steps)

    @property
    def first_difference(self) -> StepDiff | None:
        return next((s for s in self.steps if s.status != "same"), None)

    def counts(self) -> dict[str, int]:
        out = {"same": 0, "changed": 0, "only_a": 0, "only_b": 0}
        for s in self.steps:
            out[s.status] += 1
        return out


def pair_steps(old: Sequence[Step], new: Sequence[Step]) -> tuple[dict[int, Step | None], list[Step]]:
    """Recorded seq -> the new step with the same key (k-th occurrence), and unpaired new steps."""
    queues: dict[StepKey, deque[Step]] = defaultdict(deque)
    for key, step in zip(step_keys(new), sorted(new, key=lambda s: s.seq)):
        queues[key].append(step)
    pairs: dict[int, Step | None] = {}
    for key, step in zip(step_keys(old), sorted(old, key=lambda s: s.seq)):
        queue = queues.get(key)
        pairs[step.seq] = queue.popleft() if queue else None
    extra = sorted((s for q in queues.values() for s in q), key=lambda s: s.seq)
    return pairs, extra


def _same(a: Step, b: Step) -> str | None:
    if (a.error is None) != (b.error is None) or a.interrupted != b.interrupted:
        return "error differs"
    if a.error is None and not a.interrupted and canonical_key(a.update) != canonical_key(b.update):
        return "update differs"
    return None


def first_divergence(old: Sequence[Step], pairs: dict[int, Step | None], extra: Sequence[Step]) -> Divergence | None:
    found: list[Divergence] = []
    for step in sorted(old, key=lambda s: s.seq):
        other = pairs.get(step.seq)
        if other is None:
            found.append(Divergence(step.seq, step.node, canonical(step.update), None, "missing step"))
            break
        reason = _same(step, other)
        if reason is not None:
            got = other.error if reason == "error differs" and other.error else canonical(other.update)
            expected = step.error if reason == "error differs" and step.error else canonical(step.update)
            found.append(Divergence(step.seq, step.node, expected, got, reason))
            break
    if extra:
        found.append(Divergence(extra[0].seq, extra[0].node, None, canonical(extra[0].update), "extra step"))
    return min(found, key=lambda d: d.seq if d.seq is not None else -1) if found else None


def diff(store: Store | str, a: str, b: str) -> RunDiff:
    """Align two runs step by step (difflib over namespace/node/path) and compare updates."""
    store = Store(store) if not isinstance(store, Store) else store
    run_a, run_b = store.run(a), store.run(b)
    sa, sb = _ordered(store.steps(run_a.id)), _ordered(store.steps(run_b.id))
    sig_a = [(k[0], k[2], k[3]) for k in step_keys(sa)]
    sig_b = [(k[0], k[2], k[3]) for k in step_keys(sb)]
    rows: list[StepDiff] = []
    matcher = difflib.SequenceMatcher(a=sig_a, b=sig_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for x, y in zip(sa[i1:i2], sb[j1:j2]):
                status = "same" if _same(x, y) is None else "changed"
                rows.append(_row(status, x, y))
            continue
        rows.extend(_row("only_a", x, None) for x in sa[i1:i2])
        rows.extend(_row("only_b", None, y) for y in sb[j1:j2])
    output_same = canonical(run_a.output) == canonical(run_b.output)
    return RunDiff(a=run_a.id, b=run_b.id, steps=tuple(rows), output_same=output_same)


def _row(status: str, x: Step | None, y: Step | None) -> StepDiff:
    return StepDiff(
        status=status,
        node=(x or y).node,  # type: ignore[union-attr]
        a_seq=x.seq if x else None,
        b_seq=y.seq if y else None,
        a_update=canonical(x.update) if x else None,
        b_update=canonical(y.update) if y else None,
        a_error=x.error if x else None,
        b_error=y.error if y else None,
    )


def _ordered(steps: Sequence[Step]) -> list[Step]:
    """Seq order, with parallel tasks of one superstep sorted by task path (their start order varies)."""
    steps = sorted(steps, key=lambda s: s.seq)
    keys = step_keys(steps)
    out: list[Step] = []
    i = 0
    while i < len(steps):
        j = i
        while j + 1 < len(steps) and keys[j + 1][:2] == keys[i][:2]:
            j += 1
        out.extend(sorted(steps[i : j + 1], key=lambda s: s.path))
        i = j + 1
    return out


__all__ = ["Divergence", "StepDiff", "RunDiff", "diff", "pair_steps", "first_divergence"]
