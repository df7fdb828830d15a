"""The trajectory store: one SQLite file (WAL) read and written through sqlite-utils.

Plain tables with foreign keys and JSON as TEXT, so Datasette or the
`sqlite-utils` CLI can browse a store. A `_trajgraph_meta` table holds the schema
version and migrations (trajgraph/store/_schema.py) bring older stores forward; the
row encoding (JSON as TEXT) is trajgraph/store/rows.py. Opening a file that is
not a store, is corrupt, or is newer than this code raises a one-line
`StoreError` and writes nothing. Nothing here unpickles: a column that does not
hold JSON text reads as `{"__tg_unreadable__": reason}` (logged), whatever it
holds, so one damaged row never makes a whole listing fail.

A reader of the raw tables should know one space saver: a conversation's
prompt is not stored again with every model call; `model_calls.messages` holds
only the messages after the first `prompt_shared` of call `prompt_ref` (the API
returns whole prompts).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from trajgraph.errors import NotAStoreError, RunNotFoundError, StoreError
from trajgraph.store import _schema
from trajgraph.store.backends import backend_class
from trajgraph.store.liveness import died_message, gone, this_process
from trajgraph.store.redact import Redactor, redact_secrets
from trajgraph.store.rows import JSON_FIELDS, decode, encode, escape_text, resolve_prompts, row_of, unreadable
from trajgraph.trajectory import (
    SCHEMA_VERSION,
    ModelCall,
    PreferencePair,
    Run,
    SearchNode,
    Step,
    Trajectory,
)

log = logging.getLogger("trajgraph")


class Database:
    """The open store file: its connection, and `query()` yielding rows as dicts.

    The two things the store, the CLI and the viewer used from sqlite-utils' Database;
    importing sqlite-utils (and the pandas it loads) cost half a second on every CLI start.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        keys = [d[0] for d in cursor.description or ()]
        for row in cursor:
            yield dict(zip(keys, row))


class Store:
    """A trajgraph store in one SQLite file. Thread-safe; several processes may write.

    >>> store = Store("runs.db")          # created on first use
    >>> store.runs(status="failed")[:3]
    """

    def __new__(cls, path: str | Path = "trajgraph.db", *args: Any, **kwargs: Any) -> Store:
        """`Store("postgresql://…")` is the Postgres backend (trajgraph/store/backends.py); a path is this one."""
        if cls is Store:
            cls = backend_class(path) or cls
        return object.__new__(cls)

    def __init__(self, path: str | Path = "trajgraph.db", *, readonly: bool = False,
                 redact: Redactor | None = redact_secrets) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # applied to every text written (trajgraph/store/redact.py); None writes values as they are
        self.redact = redact
        self._lock = threading.RLock()
        self._db: Database | None = None
        self._writer: Any = None  # the background writer of recorded runs (trajgraph/store/writer.py), once used
        _STORES.add(self)

    @classmethod
    def from_conn_string(cls, conn_string: str) -> Store:
        """Checkpointer-style constructor: a path or `sqlite:///path`."""
        return cls(conn_string.removeprefix("sqlite:///"))

    # -- connection and schema -------------------------------------------------

    @property
    def db(self) -> Database:
        if self._db is None:
            self.setup()
        assert self._db is not None
        return self._db

    def setup(self) -> Store:
        """Open the file, check it is a store, and create or migrate the schema."""
        with self._lock:
            if self._db is not None:
                return self
            if self.readonly and not self.path.exists():
                raise StoreError(f"{self.path}: no such store file")
            if self.path.exists() and self.path.is_dir():
                raise NotAStoreError(f"{self.path}: is a directory, not a trajgraph store file")
            if not self.path.parent.is_dir():  # SQLite would only say "unable to open database file"
                raise StoreError(f"{self.path}: the folder {self.path.parent} does not exist; create it first")
            conn = self._connect()
            try:
                try:
                    version = _schema.check(conn, self.path)
                except NotAStoreError as exc:
                    raise self._permission_problem() or exc from None
                if version < SCHEMA_VERSION and not self.readonly:
                    _schema.migrate(conn)
                # WAL + NORMAL: a commit survives a killed process (not a power cut) without an fsync each
                conn.execute("PRAGMA synchronous = NORMAL")
            except BaseException:
                conn.close()
                raise
            self._db = Database(conn)
        if not self.readonly:
            self.mark_interrupted()
        return self

    def mark_interrupted(self) -> list[str]:
        """Mark `running` runs whose process has died (trajgraph/store/liveness.py) as interrupted;
        returns their ids. Runs on open; reads report such runs as interrupted even when read-only."""
        with self._lock:
            rows = list(self.db.query("SELECT id, metadata FROM runs WHERE status = 'running'"))
        dead = []
        for row in rows:
            try:
                process = json.loads(row["metadata"] or "{}").get("process")
            except (ValueError, AttributeError):
                continue
            if gone(process):
                dead.append((row["id"], {"status": "interrupted", "error": died_message(process)}))
        if dead:
            try:
                self.write(run_updates=dead)
            except StoreError:  # a store we cannot write: reads still say interrupted
                pass
        return [run_id for run_id, _ in dead]

    def _permission_problem(self) -> StoreError | None:
        """SQLite says "unable to open database file" when a WAL store's folder is read-only
        (it must create the -wal and -shm files there): that is a permissions problem, not damage."""
        folder = self.path.parent
        if os.access(folder, os.W_OK) and (not self.path.exists() or os.access(self.path, os.R_OK)):
            return None
        what = f"its folder {folder} is not writable" if not os.access(folder, os.W_OK) else "the file is not readable"
        return StoreError(
            f"{self.path}: cannot open: {what}, and a WAL store needs its -wal and -shm files beside it "
            "(a permissions problem; the file is not damaged); make the folder writable, copy the store to one that is, "
            "or open it read-only (Store(path, readonly=True))"
        )

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = f"file:{self.path.resolve()}?mode=ro"
            wal = self.path.with_name(self.path.name + "-wal")
            if not os.access(self.path.parent, os.W_OK) and not (wal.exists() and wal.stat().st_size):
                # a read-only folder: SQLite cannot create the -shm file a WAL reader needs; a store with
                # no pending WAL content can be read as immutable (nothing can write it there either)
                uri += "&immutable=1"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        else:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def flush(self) -> None:
        """Wait until every row that recording has queued for this store is committed.

        Raises `StoreError` if rows could not be stored since the last flush (they are
        logged too, and their runs marked failed with the cause)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._db is not None:
                self._db.conn.close()
                self._db = None

    def __enter__(self) -> Store:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- writes ------------------------------------------------------------------

    def write(
        self,
        *,
        runs: Sequence[Run] = (),
        run_updates: Sequence[tuple[str, dict[str, Any]]] = (),
        steps: Sequence[Step] = (),
        model_calls: Sequence[ModelCall] = (),
        search_nodes: Sequence[SearchNode] = (),
        pairs: Sequence[PreferencePair] = (),
    ) -> None:
        """Write a batch in one transaction: all of it lands or none of it does.

        Raises `StoreError` naming SQLite's own cause (a full disk, a read-only
        file, a row of a run that is not in the store), never a raw sqlite3 error.
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        n = len(runs) + len(run_updates) + len(steps) + len(model_calls) + len(search_nodes) + len(pairs)
        with self._lock:
            try:
                try:
                    self._write(runs, run_updates, steps, model_calls, search_nodes, pairs)
                except UnicodeEncodeError:  # text UTF-8 cannot hold (a lone surrogate): once more, escaped
                    rows = [[escape_text(i) for i in items] for items in (runs, run_updates, steps, model_calls, search_nodes, pairs)]
                    self._write(*rows)
            except (sqlite3.Error, UnicodeError, OverflowError, ValueError) as exc:
                raise write_error(self.path, exc, n) from exc

    def _write(
        self,
        runs: Sequence[Run],
        run_updates: Sequence[tuple[str, dict[str, Any]]],
        steps: Sequence[Step],
        model_calls: Sequence[ModelCall],
        search_nodes: Sequence[SearchNode],
        pairs: Sequence[PreferencePair],
    ) -> None:
        conn = self.db.conn
        _schema.execute_when_free(conn, "BEGIN IMMEDIATE", patience_s=2.5)  # on top of busy_timeout
        memo: dict[int, Any] = {}  # messages repeated across this batch's rows are encoded once
        try:
            if runs:
                self._insert_many(conn, "runs", [row_of(r) for r in runs], replace=True, memo=memo)
                _replace_tags(conn, {r.id: r.tags for r in runs})
            for run_id, fields in run_updates:
                self._update_run(conn, run_id, fields, memo)
            running = [r.id for r in runs if r.status == "running"] + [i for i, f in run_updates if f.get("status") == "running"]
            if running:  # whose process writes them: a run whose process died reads as interrupted
                me = json.dumps(this_process())
                conn.executemany("UPDATE runs SET metadata = json_set(metadata, '$.process', json(?)) WHERE id = ?",
                                 [(me, run_id) for run_id in running])
            ended = [(i,) for i, f in run_updates if f.get("status") not in (None, "running")]
            if ended:  # no process is running them any more
                conn.executemany("UPDATE runs SET metadata = json_remove(metadata, '$.process') WHERE id = ?", ended)
            for table, items in (
                ("steps", steps),
                ("model_calls", model_calls),
                ("search_nodes", search_nodes),
            ):
                if items:
                    self._insert_many(conn, table, [row_of(i) for i in items], replace=True, memo=memo)
            if pairs:
                self._insert_many(conn, "pairs", [row_of(p) for p in pairs], replace=False)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (SQLITE_FULL, IOERR): a second ROLLBACK
            # would fail with "no transaction is active" and hide the real cause
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete these runs with their steps, calls, nodes, pairs and tags (ON DELETE CASCADE), in one
        transaction; children before parents in `run_ids` (a kept run naming one as parent fails the batch)."""
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        ids = list(run_ids)
        with self._lock:
            conn = self.db.conn
            _schema.execute_when_free(conn, "BEGIN IMMEDIATE", patience_s=2.5)
            try:
                n = 0
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    n += conn.execute(f"DELETE FROM runs WHERE id IN ({', '.join('?' * len(chunk))})", chunk).rowcount
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: could not delete {len(ids)} run(s) ({type(exc).__name__}: {exc})") from exc
        return n

    def add_run(self, run: Run) -> None:
        self.write(runs=[run])

    def update_run(self, run_id: str, **fields: Any) -> None:
        self.write(run_updates=[(run_id, fields)])

    def _update_run(self, conn: sqlite3.Connection, run_id: str, fields: dict[str, Any], memo: dict[int, Any] | None = None) -> None:
        if not fields:
            return
        row = encode("runs", dict(fields), memo, self.redact)
        sets = ", ".join(f'"{k}"=?' for k in row)
        conn.execute(f"UPDATE runs SET {sets} WHERE id=?", [*row.values(), run_id])
        if "tags" in fields:
            _replace_tags(conn, {run_id: fields["tags"]})

    def _insert_many(
        self, conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]], replace: bool, memo: dict[int, Any] | None = None
    ) -> None:
        rows = [encode(table, r, memo, self.redact) for r in rows]
        if table == "pairs":
            for r in rows:
                r.pop("id", None)
        cols = list(rows[0])
        names = ", ".join(f'"{c}"' for c in cols)
        sql = f'INSERT INTO {table} ({names}) VALUES ({", ".join("?" * len(cols))})'
        if replace:  # an upsert, not INSERT OR REPLACE: that deletes the old row, and ON DELETE CASCADE its children
            sql += " ON CONFLICT DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in cols)
        conn.executemany(sql, [[r[c] for c in cols] for r in rows])

    # -- reads -------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        if self._writer is not None and self._writer.pending:  # read your own writes (before taking the lock)
            self._writer.flush(raise_errors=False)  # a lost row is raised to its writer, not to a reader
        with self._lock:
            try:
                return list(self.db.query(sql, params))
            except sqlite3.DatabaseError as exc:  # damaged after opening, or locked for too long
                raise StoreError(f"{self.path}: cannot read the store ({exc})") from None

    def runs(
        self,
        *,
        graph: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        kind: str | None = None,
        task: str | None = None,
        parent_id: str | None = None,
        thread_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[Run]:
        """Runs matching every filter given, newest first."""
        where: list[str] = []
        params: list[Any] = []
        for col, val in (("graph", graph), ("status", status), ("kind", kind), ("task", task), ("parent_id", parent_id), ("thread_id", thread_id)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if tag is not None:
            where.append("id IN (SELECT run_id FROM run_tags WHERE tag = ?)")
            params.append(tag)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at " + ("DESC" if newest_first else "ASC") + ", id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._run(r) for r in self._query(sql, params)]

    def run(self, run_id: str) -> Run:
        """One run by id, or by a unique prefix of its id (as the CLI accepts)."""
        rows = self._query("SELECT * FROM runs WHERE id = ?", [run_id])
        if not rows and run_id:
            # a literal prefix: LIKE would read `_` and `%` in it as wildcards
            rows = self._query("SELECT * FROM runs WHERE substr(id, 1, ?) = ? LIMIT 2", [len(run_id), run_id])
            if len(rows) > 1:
                raise RunNotFoundError(f"run id prefix {run_id!r} matches several runs in {self.path}; give more characters")
        if not rows:
            raise RunNotFoundError(f"no run {run_id!r} in {self.path}; list runs with `trajgraph runs`")
        return self._run(rows[0])

    def steps(self, run_id: str) -> list[Step]:
        rows = self._query("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", [run_id])
        return [Step(**self._decode("steps", r)) for r in rows]

    def iter_steps(self, run_ids: Iterable[str] | None = None) -> Iterator[Step]:
        """Every step (of the given runs), in run then seq order."""
        if run_ids is None:
            for r in self._query("SELECT * FROM steps ORDER BY run_id, seq"):
                yield Step(**self._decode("steps", r))
            return
        for run_id in run_ids:
            yield from self.steps(run_id)

    def model_calls(self, run_id: str | None = None) -> list[ModelCall]:
        if run_id is None:
            rows = self._query("SELECT * FROM model_calls ORDER BY run_id, seq")
        else:
            rows = self._query("SELECT * FROM model_calls WHERE run_id = ? ORDER BY seq", [run_id])
        return resolve_prompts([ModelCall(**self._decode("model_calls", r)) for r in rows])

    def search_nodes(self, run_id: str) -> list[SearchNode]:
        rows = self._query("SELECT * FROM search_nodes WHERE run_id = ? ORDER BY id", [run_id])
        return [SearchNode(**self._decode("search_nodes", r)) for r in rows]

    def pairs(self, *, run_id: str | None = None, source: str | None = None) -> list[PreferencePair]:
        where, params = [], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if source is not None:
            where.append("source = ?")
            params.append(source)
        sql = "SELECT * FROM pairs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        out = []
        for r in self._query(sql, params):
            r.pop("id", None)
            out.append(PreferencePair(**self._decode("pairs", r)))
        return out

    def trajectory(self, run_id: str) -> Trajectory:
        run = self.run(run_id)
        return Trajectory(run=run, steps=tuple(self.steps(run.id)), model_calls=tuple(self.model_calls(run.id)))

    def next_seq(self, run_id: str, table: str = "steps") -> int:
        """The next free sequence number of a run's steps (or model_calls), for resuming it."""
        if table not in ("steps", "model_calls"):
            raise StoreError(f"next_seq: table must be steps or model_calls, not {table!r}")
        rows = self._query(f"SELECT COALESCE(MAX(seq) + 1, 0) AS n FROM {table} WHERE run_id = ?", [run_id])
        return int(rows[0]["n"])

    def _decode(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        """Decode JSON columns; a value that is not JSON (say, a pickle) is marked unreadable, never run."""
        out = decode(table, row)
        for f in JSON_FIELDS[table]:
            reason = unreadable(out.get(f))
            if reason is not None:
                where = ", ".join(f"{k}={row[k]!r}" for k in ("run_id", "id", "seq") if isinstance(row.get(k), (str, int)))
                log.warning("trajgraph: %s: %s row (%s): %s", self.path, table, where, reason)
        return out

    def _run(self, row: dict[str, Any]) -> Run:
        data = self._decode("runs", row)
        data["tags"] = tuple(data.get("tags") or ())
        data["metadata"] = data.get("metadata") or {}
        if data.get("status") == "running" and isinstance(data["metadata"], dict) and gone(data["metadata"].get("process")):
            data["status"], data["error"] = "interrupted", died_message(data["metadata"]["process"])
        return Run(**data)

    def step_counts(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Number of steps of each run, in one query (for run listings)."""
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        rows = self._query(f"SELECT run_id, COUNT(*) AS n FROM steps WHERE run_id IN ({marks}) GROUP BY run_id", list(run_ids))
        return {r["run_id"]: int(r["n"]) for r in rows}

    def count(self, table: str) -> int:
        if table not in JSON_FIELDS:
            raise StoreError(f"unknown table {table!r}; one of {sorted(JSON_FIELDS)}")
        return int(self._query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


_HINTS = {
    "SQLITE_FULL": "the disk (or the store's max_page_count) is full; free space and write again",
    "SQLITE_READONLY": "the store file or its folder is read-only; make it writable or record to another store",
    "SQLITE_CANTOPEN": "the store file cannot be opened for writing; check its folder's permissions",
    "SQLITE_IOERR": "the disk reported an I/O error; check the disk",
    "SQLITE_BUSY": "another process held the store too long; retry",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "a row names a run that is not in the store; write the run first",
    "SQLITE_CONSTRAINT_NOTNULL": "a row lacks a required field",
    "SQLITE_CONSTRAINT": "a row breaks a constraint of the schema (a repeated key?)",
}


def write_error(path: Path, exc: BaseException, rows: int) -> StoreError:
    """A one-line StoreError for a failed write: SQLite's own cause and what to do about it."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    hint = next((h for name, h in _HINTS.items() if code.startswith(name)), "")
    if not hint and "locked" in str(exc):
        hint = _HINTS["SQLITE_BUSY"]
    cause = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return StoreError(f"{path}: could not write {rows} row(s) ({cause}{', ' + code if code else ''})" + (f"; {hint}" if hint else ""))


_STORES: weakref.WeakSet[Store] = weakref.WeakSet()
_ABANDONED: list[Any] = []  # connections inherited across fork: never used or closed in the child


def _after_fork_in_child() -> None:
    """SQLite connections and held locks must not cross fork: a forked child opens its own."""
    for store in list(_STORES):
        if store._db is not None:
            _ABANDONED.append(store._db)
        store._db = None
        store._lock = threading.RLock()
        store._writer = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _replace_tags(conn: sqlite3.Connection, tags: dict[str, Any]) -> None:
    """run_tags rows for each run id: exactly its given tags (the table the `--tag` filter reads)."""
    conn.executemany("DELETE FROM run_tags WHERE run_id=?", [(run_id,) for run_id in tags])
    conn.executemany("INSERT OR IGNORE INTO run_tags VALUES (?, ?)", [(run_id, t) for run_id, ts in tags.items() for t in ts])


__all__ = ["Store"]
