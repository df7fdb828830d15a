"""`PostgresStore`: the store contract on PostgreSQL, for a team or a cluster sharing one store.

    store = tg.Store("postgresql://user@db.internal/trajgraph")   # dispatches here
    store = PostgresStore(url, schema="team_a")                   # one database, several stores

Same tables, schema versions and row encoding as the SQLite store (JSON as TEXT,
byte for byte: both call `trajgraph.store.rows.encode`), so a run copied from
one to the other reads back equal. Connections come from a psycopg 3 pool and
are checked before each use (`ConnectionPool.check_connection`): servers and
proxies drop idle connections while a worker waits on a long model call, and a
dead connection should cost a reconnect, not a failed write. A batch is one
transaction; two workers upserting the same rows in a different order can
deadlock, and Postgres then aborts one of them: that batch is retried whole.

It subclasses the SQLite `Store` only so that code asking `isinstance(x, Store)`
accepts it; every method that touches the database is its own.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from trajgraph.adapters.postgres import _schema
from trajgraph.errors import ConfigError, RunNotFoundError, StoreError
from trajgraph.store.liveness import died_message, gone, this_process
from trajgraph.store.rows import JSON_FIELDS, encode, escape_text, resolve_prompts, row_of
from trajgraph.store.sqlite import Store
from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step, Trajectory

_KEYS = {"runs": ("id",), "steps": ("run_id", "seq"), "model_calls": ("run_id", "seq"), "search_nodes": ("run_id", "id")}
_RETRIES = 5  # deadlock / serialization failures: the batch is retried whole


def redact(url: str) -> str:
    """The URL without its password, for messages and `store.path`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("@")[-1]
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc[-1]))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text.removeprefix("connection failed: ") or type(exc).__name__


class PostgresStore(Store):
    """A trajgraph store in a PostgreSQL database (or one schema of it). Thread-safe; many processes may write."""

    def __init__(
        self,
        path: str = "",
        *,
        readonly: bool = False,
        schema: str | None = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        if not path.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{path!r}: not a PostgreSQL URL; give postgresql://user@host:port/database")
        self.url = path
        self.path = redact(path)  # type: ignore[assignment]  # what messages (and the writer's) name
        self.readonly = readonly
        self.schema = schema
        self.pool_size = max(1, pool_size)
        try:
            params = conninfo_to_dict(path)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"{self.path}: malformed PostgreSQL URL ({_one_line(exc)}); give postgresql://user@host:port/database") from None
        if not all(p.strip().isdigit() for p in str(params.get("port") or "5432").split(",")):
            raise ConfigError(f"{self.path}: malformed PostgreSQL URL (port {params['port']!r} is not a number)")
        params.setdefault("connect_timeout", max(1, int(connect_timeout)))
        params.setdefault("application_name", "trajgraph")
        if schema is not None:
            if not schema.replace("_", "").isalnum():
                raise ConfigError(f"schema {schema!r}: use letters, digits and _ only")
            params["options"] = (str(params.get("options") or "") + f" -c search_path={schema}").strip()
        self._conninfo = make_conninfo("", **params)
        self._lock = threading.RLock()
        self._pool: ConnectionPool | None = None
        self._finalizer: Any = None
        self._db = None
        self._writer: Any = None
        _PG_STORES.add(self)

    @classmethod
    def from_conn_string(cls, conn_string: str) -> PostgresStore:
        return cls(conn_string)

    # -- connection and schema -------------------------------------------------

    def setup(self) -> PostgresStore:
        """Connect, check the schema version and migrate (once, whoever else is doing the same)."""
        with self._lock:
            if self._pool is not None:
                return self
            try:
                conn = psycopg.connect(self._conninfo, autocommit=True)
            except psycopg.Error as exc:
                raise StoreError(
                    f"{self.path}: cannot connect ({_one_line(exc)}); check that the server runs and the URL"
                ) from None
            try:
                if self.schema is not None and not self.readonly:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_schema.LOCK_KEY])
                        conn.execute(pg_sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pg_sql.Identifier(self.schema)))
                _schema.setup(conn, str(self.path), readonly=self.readonly)  # the redacted URL (Store declares path a Path)
            except psycopg.Error as exc:
                raise StoreError(f"{self.path}: cannot set up the store ({_one_line(exc)})") from None
            finally:
                conn.close()
            self._pool = ConnectionPool(
                self._conninfo,
                min_size=1,
                max_size=self.pool_size,
                kwargs={"autocommit": True},  # reads need no transaction; writes open one explicitly
                check=ConnectionPool.check_connection,
                max_idle=300,
                name=f"trajgraph:{self.path}",
                open=True,
            )
            # a store dropped unclosed: close its pool, but never from one of the pool's own threads
            # (the garbage collector may run there, and a pool cannot join the thread it runs on)
            self._finalizer = weakref.finalize(self, _release, self._pool)
        if not self.readonly:
            self.mark_interrupted()
        return self

    def mark_interrupted(self) -> list[str]:
        """Mark `running` runs whose process died on this host as interrupted (as the SQLite store does on open)."""
        rows = self._query("SELECT id, metadata FROM runs WHERE status = 'running'")
        dead = []
        for row in rows:
            try:
                process = json.loads(row["metadata"] or "{}").get("process")
            except (ValueError, AttributeError):
                continue
            if gone(process):
                dead.append((row["id"], {"status": "interrupted", "error": died_message(process)}))
        if dead:
            self.write(run_updates=dead)
        return [run_id for run_id, _ in dead]

    @property
    def db(self) -> Any:  # the SQLite store's sqlite-utils handle: there is none here
        raise StoreError(f"{self.path}: a PostgreSQL store has no SQLite handle; use the Store methods")

    def _connection(self) -> Any:
        pool = self._pool if self._pool is not None else self.setup()._pool
        assert pool is not None
        return pool.connection(timeout=30)

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._pool is not None:
                self._finalizer.detach()
                self._pool.close()
                self._pool = None

    def __enter__(self) -> PostgresStore:
        return self.setup()

    def __repr__(self) -> str:
        return f"PostgresStore({self.path!r})"

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

        Text Postgres cannot hold (a lone surrogate from `os.fsdecode`, a NUL
        character) is written escaped, a marked change, as the SQLite store does.
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        batch = (runs, run_updates, steps, model_calls, search_nodes, pairs)
        n = sum(len(items) for items in batch)
        try:
            self._transaction(_operations(*batch), n)
        except (UnicodeEncodeError, _NulError):
            self._transaction(_operations(*[[_escaped(i) for i in items] for items in batch]), n)

    def _transaction(self, ops: list[tuple[Any, list[list[Any]]]], n: int) -> None:
        if not ops:
            return
        delay = 0.01
        for attempt in range(_RETRIES):
            try:
                with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                    for statement, params in ops:
                        cur.executemany(statement, params)
                return
            except (psycopg.Error, PoolTimeout) as exc:  # the transaction rolled back: nothing of the batch landed
                if isinstance(exc, psycopg.DataError) and "NUL" in str(exc):
                    raise _NulError from exc
                transient = isinstance(exc, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure))
                if transient and attempt < _RETRIES - 1:  # two writers upserting shared rows in another order
                    time.sleep(delay)
                    delay *= 3
                    continue
                raise StoreError(f"{self.path}: could not write {n} row(s) ({type(exc).__name__}: {_one_line(exc)})") from exc

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete these runs with their steps, calls, nodes, pairs and tags, in one transaction.
        A run another (kept) run names as its parent cannot go: the caller deletes families whole."""
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        if not run_ids:
            return 0
        with self._connection() as conn, conn.transaction():
            return int(conn.execute("DELETE FROM runs WHERE id = ANY(%s)", [list(run_ids)]).rowcount)

    # -- reads -------------------------------------------------------------------

    def _query(self, sql: Any, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        if self._writer is not None and self._writer.pending:  # read your own writes
            self._writer.flush()
        try:
            with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                return list(cur.execute(sql, params or None).fetchall())
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreError(f"{self.path}: cannot read the store ({_one_line(exc)})") from None

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
        """Runs matching every filter given, newest first (ties by id, byte order as in SQLite)."""
        where: list[str] = []
        params: list[Any] = []
        for col, val in (("graph", graph), ("status", status), ("kind", kind), ("task", task), ("parent_id", parent_id), ("thread_id", thread_id)):
            if val is not None:
                where.append(f"{col} = %s")
                params.append(val)
        if tag is not None:
            where.append("id IN (SELECT run_id FROM run_tags WHERE tag = %s)")
            params.append(tag)
        if since is not None:
            where.append("started_at >= %s")
            params.append(since)
        if until is not None:
            where.append("started_at < %s")
            params.append(until)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY started_at " + ("DESC" if newest_first else "ASC") + ', id COLLATE "C"'
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._run(r) for r in self._query(sql, params)]

    def run(self, run_id: str) -> Run:
        """One run by id, or by a unique prefix of its id (as the CLI accepts)."""
        rows = self._query("SELECT * FROM runs WHERE id = %s", [run_id])
        if not rows and run_id:
            # compared as text, not LIKE: '_' and '%' in what the user typed are characters, not patterns
            rows = self._query("SELECT * FROM runs WHERE left(id, length(%s)) = %s LIMIT 2", [run_id, run_id])
            if len(rows) > 1:
                raise RunNotFoundError(f"run id prefix {run_id!r} matches several runs in {self.path}; give more characters")
        if not rows:
            raise RunNotFoundError(f"no run {run_id!r} in {self.path}; list runs with `trajgraph runs`")
        return self._run(rows[0])

    def steps(self, run_id: str) -> list[Step]:
        rows = self._query("SELECT * FROM steps WHERE run_id = %s ORDER BY seq", [run_id])
        return [Step(**self._decode("steps", r)) for r in rows]

    def iter_steps(self, run_ids: Iterable[str] | None = None) -> Iterator[Step]:
        if run_ids is None:
            for r in self._query('SELECT * FROM steps ORDER BY run_id COLLATE "C", seq'):
                yield Step(**self._decode("steps", r))
            return
        for run_id in run_ids:
            yield from self.steps(run_id)

    def model_calls(self, run_id: str | None = None) -> list[ModelCall]:
        if run_id is None:
            rows = self._query('SELECT * FROM model_calls ORDER BY run_id COLLATE "C", seq')
        else:
            rows = self._query("SELECT * FROM model_calls WHERE run_id = %s ORDER BY seq", [run_id])
        return resolve_prompts([ModelCall(**self._decode("model_calls", r)) for r in rows])

    def search_nodes(self, run_id: str) -> list[SearchNode]:
        rows = self._query("SELECT * FROM search_nodes WHERE run_id = %s ORDER BY id", [run_id])
        return [SearchNode(**self._decode("search_nodes", r)) for r in rows]

    def pairs(self, *, run_id: str | None = None, source: str | None = None) -> list[PreferencePair]:
        where, params = [], []
        if run_id is not None:
            where.append("run_id = %s")
            params.append(run_id)
        if source is not None:
            where.append("source = %s")
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
        if table not in ("steps", "model_calls"):
            raise StoreError(f"next_seq: table must be steps or model_calls, not {table!r}")
        rows = self._query(f"SELECT COALESCE(MAX(seq) + 1, 0) AS n FROM {table} WHERE run_id = %s", [run_id])
        return int(rows[0]["n"])

    def step_counts(self, run_ids: Sequence[str]) -> dict[str, int]:
        if not run_ids:
            return {}
        rows = self._query("SELECT run_id, COUNT(*) AS n FROM steps WHERE run_id = ANY(%s) GROUP BY run_id", [list(run_ids)])
        return {r["run_id"]: int(r["n"]) for r in rows}

    def count(self, table: str) -> int:
        if table not in JSON_FIELDS:
            raise StoreError(f"unknown table {table!r}; one of {sorted(JSON_FIELDS)}")
        return int(self._query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


class _NulError(Exception):
    """A text value held a NUL character, which Postgres TEXT cannot store."""


def _escaped(item: Any) -> Any:
    """`item` with its plain text made storable: surrogates backslash-escaped, NUL as the text \\x00."""
    item = escape_text(item)
    if isinstance(item, tuple):  # a run update
        return (item[0], {k: _no_nul(v) for k, v in item[1].items()})
    changed = {k: _no_nul(v) for k, v in item.__dict__.items() if isinstance(v, str) and "\x00" in v}
    return item.replace(**changed) if changed else item


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "\\x00") if isinstance(value, str) else value


def _operations(
    runs: Sequence[Run],
    run_updates: Sequence[tuple[str, dict[str, Any]]],
    steps: Sequence[Step],
    model_calls: Sequence[ModelCall],
    search_nodes: Sequence[SearchNode],
    pairs: Sequence[PreferencePair],
) -> list[tuple[Any, list[list[Any]]]]:
    """The statements of one batch, every row encoded (once, before any row lock is taken)."""
    memo: dict[int, Any] = {}
    ops: list[tuple[Any, list[list[Any]]]] = []
    if any(r.status == "running" for r in runs):  # whose process writes it: if that process dies, it reads as interrupted
        me = this_process()
        runs = [r.replace(metadata={**r.metadata, "process": me}) if r.status == "running" else r for r in runs]
    if runs:
        ops.append(_upsert("runs", [encode("runs", row_of(r), memo) for r in runs]))
        ops.extend(_tag_ops({r.id: r.tags for r in runs}))
    for run_id, fields in run_updates:
        if fields:
            row = encode("runs", dict(fields), memo)
            sets = pg_sql.SQL(", ").join(pg_sql.SQL("{} = %s").format(pg_sql.Identifier(k)) for k in row)
            ops.append((pg_sql.SQL("UPDATE runs SET {} WHERE id = %s").format(sets), [[*row.values(), run_id]]))
            if "tags" in fields:
                ops.extend(_tag_ops({run_id: fields["tags"]}))
    for table, items in (("steps", steps), ("model_calls", model_calls), ("search_nodes", search_nodes)):
        if items:
            ops.append(_upsert(table, [encode(table, row_of(i), memo) for i in items]))
    if pairs:
        rows = [encode("pairs", row_of(p), memo) for p in pairs]
        for r in rows:
            r.pop("id", None)
        ops.append(_insert("pairs", rows))
    return ops


def _columns(cols: Iterable[str]) -> Any:
    return pg_sql.SQL(", ").join(pg_sql.Identifier(c) for c in cols)


def _insert(table: str, rows: list[dict[str, Any]]) -> tuple[Any, list[list[Any]]]:
    cols = list(rows[0])
    statement = pg_sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        pg_sql.Identifier(table), _columns(cols), pg_sql.SQL(", ").join(pg_sql.Placeholder() * len(cols))
    )
    return statement, [[r[c] for c in cols] for r in rows]


def _upsert(table: str, rows: list[dict[str, Any]]) -> tuple[Any, list[list[Any]]]:
    """INSERT ... ON CONFLICT DO UPDATE: a rewritten row replaces the old one, keeping the rows that point at it."""
    statement, params = _insert(table, rows)
    keys = _KEYS[table]
    sets = pg_sql.SQL(", ").join(
        pg_sql.SQL("{0} = EXCLUDED.{0}").format(pg_sql.Identifier(c)) for c in rows[0] if c not in keys
    )
    return pg_sql.SQL("{} ON CONFLICT ({}) DO UPDATE SET {}").format(statement, _columns(keys), sets), params


def _tag_ops(tags: dict[str, Any]) -> list[tuple[Any, list[list[Any]]]]:
    """run_tags rows for each run: exactly its given tags (the table the `--tag` filter reads)."""
    ops: list[tuple[Any, list[list[Any]]]] = [("DELETE FROM run_tags WHERE run_id = %s", [[run_id] for run_id in tags])]
    rows = [[run_id, t] for run_id, ts in tags.items() for t in dict.fromkeys(ts or ())]
    if rows:
        ops.append(("INSERT INTO run_tags (run_id, tag) VALUES (%s, %s) ON CONFLICT DO NOTHING", rows))
    return ops


def _release(pool: ConnectionPool) -> None:
    if threading.current_thread() is threading.main_thread():
        pool.close(timeout=5)
    else:
        threading.Thread(target=pool.close, name="trajgraph-pool-close", daemon=True).start()


_PG_STORES: weakref.WeakSet[PostgresStore] = weakref.WeakSet()
_ABANDONED: list[Any] = []  # pools inherited across fork: their sockets are the parent's; never used or closed here


def _after_fork_in_child() -> None:
    """A forked child must not talk on the parent's sockets (nor close them): it opens its own pool."""
    for store in list(_PG_STORES):
        if store._pool is not None:
            store._finalizer.detach()  # the parent's pool: its sockets are not this process's to close
            _ABANDONED.append(store._pool)
        store._pool = None
        store._lock = threading.RLock()
        store._writer = None


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["PostgresStore", "redact"]
