"""Copying runs between stores (a laptop's SQLite into the team's Postgres, and back) and pruning old ones.

Both work on *families*: a top-level run with every run under it (a search with
its rollouts, a recording with its forks). A family is copied in one write, so
the destination never holds a rollout without its search, and pruned whole, so
no kept run is left naming a deleted parent.

Copying is idempotent. A family already in the destination exactly as in the
source is skipped; one that changed since (a run that was still running at the
last copy) is replaced: its runs are deleted from the destination, then
written again, so preference pairs (which have no natural key) are never
doubled. The two steps are separate transactions; a copy interrupted between
them leaves that family missing from the destination, and the next copy brings
it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajgraph.errors import ConfigError, RunNotFoundError
from trajgraph.store.rows import encode, row_of
from trajgraph.trajectory import Run


def families(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """root id -> the family's runs, parents before children (oldest roots first)."""
    by_id = {r.id: r for r in runs}
    children: dict[str | None, list[Run]] = {}
    for r in by_id.values():
        parent = r.parent_id if r.parent_id in by_id and r.parent_id != r.id else None
        children.setdefault(parent, []).append(r)
    out: dict[str, list[Run]] = {}
    for root in sorted(children.get(None, []), key=lambda r: (r.started_at, r.id)):
        members, frontier = [], [root]
        while frontier:  # breadth first: every parent is written before its children
            members.extend(frontier)
            frontier = [c for r in frontier for c in sorted(children.get(r.id, []), key=lambda r: (r.started_at, r.id))]
        out[root.id] = members
    return out


def family_age(members: Sequence[Run]) -> float:
    """When a family was last active: its newest start or end."""
    return max(max(r.started_at, r.ended_at or 0.0) for r in members)


@dataclass
class CopyReport:
    families: int = 0
    runs: int = 0
    steps: int = 0
    model_calls: int = 0
    search_nodes: int = 0
    pairs: int = 0
    skipped: int = 0  # families already in the destination as they are in the source
    replaced: int = 0  # families that had changed in the source since an earlier copy
    run_ids: list[str] = field(default_factory=list)


def _same(a: Run, b: Run) -> bool:
    return encode("runs", row_of(a)) == encode("runs", row_of(b))


def copy_runs(src: Any, dst: Any, *, select: Callable[[Run], bool] | None = None,
              on_family: Callable[[str, int], None] | None = None) -> CopyReport:
    """Copy the families of the runs `select` picks (default: every run) from `src` into `dst`."""
    if getattr(dst, "readonly", False):
        raise ConfigError(f"{dst.path}: the destination store is open read-only")
    report = CopyReport()
    for root, members in families(src.runs(newest_first=False)).items():
        if select is not None and not any(select(r) for r in members):
            continue
        ids = [r.id for r in members]
        there = {r.id: r for r in (_get(dst, i) for i in ids) if r is not None}
        if len(there) == len(members) and all(_same(there[r.id], r) for r in members):
            report.skipped += 1
            continue
        if there:  # an older copy of this family: replace it whole (children first)
            dst.delete_runs([i for i in reversed(ids) if i in there])
            report.replaced += 1
        rows: dict[str, list[Any]] = {"steps": [], "model_calls": [], "search_nodes": [], "pairs": []}
        for run_id in ids:
            rows["steps"] += src.steps(run_id)
            rows["model_calls"] += src.model_calls(run_id)
            rows["search_nodes"] += src.search_nodes(run_id)
            rows["pairs"] += src.pairs(run_id=run_id)
        dst.write(runs=members, **rows)
        report.families += 1
        report.runs += len(members)
        report.run_ids += ids
        for table, items in rows.items():
            setattr(report, table, getattr(report, table) + len(items))
        if on_family is not None:
            on_family(root, len(members))
    return report


def _get(store: Any, run_id: str) -> Run | None:
    try:
        run = store.run(run_id)
    except RunNotFoundError:
        return None
    return run if run.id == run_id else None  # store.run also accepts prefixes: only the exact id counts


def lineages(runs: Sequence[Run], matches: Callable[[Run], bool]) -> list[Run]:
    """The runs for which `matches` holds and every run below one of them, parents before children
    (a training split with its rollouts, or what to delete with the runs it names)."""
    kept: dict[str, Run] = {}
    for members in families(runs).values():
        for run in members:  # parents before children
            if matches(run) or run.parent_id in kept:
                kept[run.id] = run
    return list(kept.values())


@dataclass
class PrunePlan:
    families: list[list[Run]]  # each: parents first
    kept: int

    @property
    def run_ids(self) -> list[str]:
        return [r.id for members in self.families for r in members]


def plan_prune(store: Any, *, older_than: float | None = None, keep_last: int | None = None,
               now: float | None = None) -> PrunePlan:
    """Families to delete: those last active more than `older_than` seconds ago, beyond the `keep_last` newest.

    With both given, a family goes only when it is both old and not among the newest `keep_last`.
    """
    if older_than is None and keep_last is None:
        raise ConfigError("say what to prune: give --older-than (e.g. 30d) and/or --keep-last N")
    if older_than is not None and older_than < 0:
        raise ConfigError(f"--older-than must not be negative, got {older_than}")
    if keep_last is not None and keep_last < 0:
        raise ConfigError(f"--keep-last must not be negative, got {keep_last}")
    fams = sorted(families(store.runs(newest_first=False)).values(), key=family_age, reverse=True)
    cutoff = None if older_than is None else (time.time() if now is None else now) - older_than
    doomed = []
    for i, members in enumerate(fams):
        if keep_last is not None and i < keep_last:
            continue
        if cutoff is not None and family_age(members) >= cutoff:
            continue
        doomed.append(members)
    return PrunePlan(families=doomed, kept=len(fams) - len(doomed))


def prune(store: Any, plan: PrunePlan) -> int:
    """Delete the planned families (children before parents), in one transaction; returns runs deleted."""
    ids = [r.id for members in plan.families for r in reversed(members)]
    return int(store.delete_runs(ids)) if ids else 0


__all__ = ["CopyReport", "PrunePlan", "copy_runs", "families", "family_age", "lineages", "plan_prune", "prune"]
