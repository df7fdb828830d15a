"""Consistent, read-only reads of a store, and the run filters every export shares.

`snapshot()` opens the file with `mode=ro` inside one read transaction: in WAL
mode writers carry on, and every read inside sees the same commit. Used by the
dataset exports, the span export and the viewer.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, get_args

from trajgraph.errors import ConfigError, StoreError
from trajgraph.store import SQLiteStore, Store
from trajgraph.store.backends import scheme_of
from trajgraph.store.sqlite import sql_limit
from trajgraph.store.text import utf8_text
from trajgraph.trajectory import Run, RunKind, RunStatus, Step

_STATUSES = get_args(RunStatus)
_KINDS = get_args(RunKind)


@contextmanager
def snapshot(store: Store | str | Path) -> Iterator[Store]:
    """A read-only Store pinned to one instant: every read inside sees the same commit.

    Opens the file with `mode=ro` (never writes, never migrates) and holds one
    read transaction; in WAL mode writers carry on meanwhile. Given a `Store`,
    its queued recordings are flushed first, so a program sees its own runs. A
    file with no trajgraph tables yet reads as an empty store.
    """
    if isinstance(store, Store):
        store.flush()  # rows this program recorded but the background writer has not committed yet
    if (isinstance(store, Store) and not isinstance(store, SQLiteStore)) or (isinstance(store, str) and scheme_of(store)):
        # a server store (postgresql://): read through its own API, each query at the latest commit
        server = store if isinstance(store, Store) else Store(store, readonly=True)
        try:
            yield server.setup()
        finally:
            if server is not store:
                server.close()
        return
    path = store.path if isinstance(store, Store) else Path(store)
    ro = Store(path, readonly=True)
    ro.setup()  # one-line StoreError for a missing, foreign, corrupt or too-new file
    conn = ro.db.conn
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "runs" not in tables:
            ro.close()
            ro = Store(":memory:").setup()  # a new, empty file: read it as an empty store
            conn = ro.db.conn
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM runs").fetchone()  # the snapshot starts at the first read
        yield ro
    except sqlite3.OperationalError as exc:
        raise StoreError(f"{path}: cannot read store ({exc})") from None
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        ro.close()


# -- filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilter:
    """Which runs an export reads. Every field is optional; all given must match."""

    graph: str | None = None
    tag: str | None = None
    status: str | None = None
    kind: str | None = None
    task: str | None = None
    min_outcome: float | None = None
    max_outcome: float | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def of(cls, **filters: Any) -> RunFilter:
        """Validate user filters; any mistake is one `ConfigError` line."""
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(filters) - names)
        if unknown:
            raise ConfigError(f"unknown filter {', '.join(unknown)}; filters are {', '.join(sorted(names))}")
        f = dict(filters)
        for key in ("graph", "tag", "task"):
            if f.get(key) is not None and not isinstance(f[key], str):
                raise ConfigError(f"{key}={f[key]!r} must be a string")
            if f.get(key) is not None:  # a non-UTF-8 argument matches the store's escaped text (store/text.py)
                f[key] = utf8_text(f[key])
        if f.get("status") is not None and f["status"] not in _STATUSES:
            raise ConfigError(f"status={f['status']!r} is not a run status; one of {', '.join(_STATUSES)}")
        if f.get("kind") is not None and f["kind"] not in _KINDS:
            raise ConfigError(f"kind={f['kind']!r} is not a run kind; one of {', '.join(_KINDS)}")
        for key in ("min_outcome", "max_outcome"):
            f[key] = as_number(key, f.get(key))
        if f["min_outcome"] is not None and f["max_outcome"] is not None and f["min_outcome"] > f["max_outcome"]:
            raise ConfigError(f"min_outcome {f['min_outcome']} is above max_outcome {f['max_outcome']}; nothing could match")
        f["since"], f["until"] = parse_time("since", f.get("since")), parse_time("until", f.get("until"))
        if f["since"] is not None and f["until"] is not None and f["since"] >= f["until"]:
            raise ConfigError("since is not before until; nothing could match")
        return cls(**f)

    def runs(self, db: Store, *, exclude_kinds: Sequence[str] = ()) -> list[Run]:
        """Matching runs, oldest first. Outcome bounds use `effective_outcome`."""
        runs = db.runs(
            graph=self.graph, status=self.status, tag=self.tag, kind=self.kind, task=self.task,
            since=self.since, until=self.until, newest_first=False,
        )
        if self.kind is None and exclude_kinds:
            runs = [r for r in runs if r.kind not in exclude_kinds]
        if self.min_outcome is None and self.max_outcome is None:
            return runs
        out = []
        for run in runs:
            value = effective_outcome(run, db.steps(run.id))
            if value is None:
                continue
            if self.min_outcome is not None and value < self.min_outcome:
                continue
            if self.max_outcome is not None and value > self.max_outcome:
                continue
            out.append(run)
        return out


# The outcome a filter compares: the run's own, else the last finished env step's numeric `reward`
# (`effective_outcome` in SQL, so outcome bounds apply before a LIMIT).
_OUTCOME_SQL = (
    "COALESCE(runs.outcome, (SELECT json_extract(s.\"update\", '$.reward') FROM steps s WHERE s.run_id = runs.id "
    "AND json_valid(s.\"update\") AND json_extract(s.\"update\", '$.done') = 1 "
    "AND json_type(s.\"update\", '$.reward') IN ('integer', 'real') ORDER BY s.seq DESC LIMIT 1))"
)


def select_runs(db: Store, rf: RunFilter, *, limit: int | None = None, offset: int = 0, newest_first: bool = True) -> list[Run]:
    """Runs matching every filter, outcome bounds included, applied before `limit`.

    For listings (the CLI's `runs`, the viewer) that show the newest N of possibly
    many matches; `RunFilter.runs` reads every match for exports. On SQLite the
    whole filter is one query; another backend filters outcomes here, then slices.
    """
    if rf.min_outcome is None and rf.max_outcome is None:
        runs = db.runs(graph=rf.graph, status=rf.status, tag=rf.tag, kind=rf.kind, task=rf.task, since=rf.since,
                       until=rf.until, newest_first=newest_first, limit=None if limit is None else limit + offset)
        return runs[offset:]
    if not _sqlite(db):
        runs = rf.runs(db)[:: -1 if newest_first else 1]
        return runs[offset:] if limit is None else runs[offset:offset + limit]
    where, params = _where(rf)
    sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY started_at " + ("DESC" if newest_first else "ASC") + ", id"
    if limit is not None:
        sql += f" LIMIT {sql_limit(limit)} OFFSET {sql_limit(offset)}"
    return [db._run(r) for r in db._query(sql, params)]


def count_runs(db: Store, rf: RunFilter) -> int:
    """How many runs match (for "showing N of M")."""
    if not _sqlite(db):
        return len(select_runs(db, rf))
    where, params = _where(rf)
    sql = "SELECT COUNT(*) AS n FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
    return int(db._query(sql, params)[0]["n"])


def _sqlite(db: Store) -> bool:
    return isinstance(db, SQLiteStore)  # a server backend's SQL dialect differs


def _where(rf: RunFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for col, value in (("graph", rf.graph), ("status", rf.status), ("kind", rf.kind), ("task", rf.task)):
        if value is not None:
            where.append(f"runs.{col} = ?")
            params.append(value)
    if rf.tag is not None:
        where.append("runs.id IN (SELECT run_id FROM run_tags WHERE tag = ?)")
        params.append(rf.tag)
    if rf.since is not None:
        where.append("runs.started_at >= ?")
        params.append(rf.since)
    if rf.until is not None:
        where.append("runs.started_at < ?")
        params.append(rf.until)
    if rf.min_outcome is not None:
        where.append(f"{_OUTCOME_SQL} >= ?")
        params.append(rf.min_outcome)
    if rf.max_outcome is not None:
        where.append(f"{_OUTCOME_SQL} <= ?")
        params.append(rf.max_outcome)
    return where, params


def as_number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}={value!r} must be a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    return number


_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(name: str, value: Any) -> float:
    """A length of time in seconds: '90m', '12h', '30d', '2w', or plain seconds (the one age parser)."""
    age = _AGE.fullmatch(str(value).strip())
    if age is None:
        raise ConfigError(f"{name} {value!r}: give an age such as 90m, 12h, 30d or 2w (or seconds)")
    seconds = float(age.group(1)) * _UNITS[age.group(2)]
    if not math.isfinite(seconds):
        raise ConfigError(f"{name} {value!r}: too long an age")
    return seconds


def parse_time(name: str, value: Any) -> float | None:
    """A Unix timestamp from a number, a datetime, an ISO date/time, or an age ('2h', '7d' ago)."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return as_number(name, value)
    if isinstance(value, str):
        text = value.strip()
        age = _AGE.fullmatch(text)
        if age and age.group(2):  # with a unit it is an age; a bare number is a timestamp
            return time.time() - parse_age(name, text)
        try:
            number = float(text)
        except ValueError:
            pass
        else:  # nan, inf, 1e400: no time
            return as_number(name, number) if math.isfinite(number) else _not_a_time(name, value)
        try:
            return _dt.datetime.fromisoformat(text).timestamp()
        except ValueError:
            pass
    _not_a_time(name, value)


def _not_a_time(name: str, value: Any) -> NoReturn:
    raise ConfigError(
        f"{name}={value!r} is not a time; give a Unix timestamp, an ISO date (2026-01-31 or 2026-01-31T12:00) or an age like 2h or 7d"
    )


def effective_outcome(run: Run, steps: Sequence[Step]) -> float | None:
    """The run's outcome, else the final `reward` of an env loop (state key, set when done)."""
    if run.outcome is not None:
        return run.outcome
    for step in reversed(steps):
        update = step.update
        if isinstance(update, dict) and update.get("done") and isinstance(update.get("reward"), (int, float)):
            return float(update["reward"])
    return None


__all__ = ["snapshot", "RunFilter", "select_runs", "count_runs", "parse_age", "parse_time", "effective_outcome", "as_number"]
