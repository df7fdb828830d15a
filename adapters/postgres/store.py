"""`PostgresStore`: the store contract on PostgreSQL, for a team or a cluster sharing one store.

    store = tg.Store("postgresql://user@db.internal/trajgraph")   # found through the trajgraph.stores entry point
    store = PostgresStore(url, schema="team_a")                   # one database, several stores

Every query is the core's (trajgraph/store/base.py) in PostgreSQL's dialect
(`_schema.POSTGRES`), and so are the tables, versions and row encoding (JSON as
TEXT, byte for byte as in SQLite), so a run copied from one to the other reads
back equal. What is PostgreSQL's own is here: connections, transactions, retries.

Connections come from a psycopg 3 pool and are checked before each use
(`ConnectionPool.check_connection`): servers and proxies drop idle connections
while a worker waits on a long model call, and a dead connection should cost a
reconnect, not a failed write. A batch is one transaction. When it fails for a
reason that passes (the server restarting or unreachable, a dropped connection,
two writers deadlocking on shared rows) the whole batch is retried, with
backoff, until `write_deadline_s` (default 60 s) has passed since the batch
began; then it fails whole with `StoreUnavailableError` and nothing of it is
written. So a server away for less than the deadline costs a wait, never a
row; one away longer costs whole batches, which the writer reports
(trajgraph/store/writer.py), never half of one. Reads retry once.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql as pg_sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from trajgraph.adapters.postgres import _schema
from trajgraph.errors import ConfigError, StoreError, StoreUnavailableError
from trajgraph.store import Store, mask_url
from trajgraph.store.base import Tx, UnstorableText
from trajgraph.store.redact import Redactor, redact_secrets
from trajgraph.store.rows import escape_text
from trajgraph.store.schema import SearchIndex


def redact(url: str) -> str:
    """The URL without its passwords (`user:***@`, `?password=***`), for messages and `store.path`."""
    return mask_url(url)


def _one_line(exc: BaseException) -> str:
    text = mask_url(" ".join(str(exc).split()))
    return text.removeprefix("connection failed: ") or type(exc).__name__


def _passes(exc: BaseException) -> bool:
    """An error worth retrying the batch for: the connection or server went away, or a deadlock."""
    if isinstance(exc, (PoolTimeout, psycopg.InterfaceError)):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate or ""
    # none: the client lost the connection; 08: connection exception; 57P: admin/crash shutdown, cannot
    # connect now; 40: deadlock or serialization failure; 53300: too many connections
    return not state or state.startswith(("08", "57P", "40")) or state == "53300"


class PostgresStore(Store):
    """A trajgraph store in a PostgreSQL database (or one schema of it). Thread-safe; many processes may write."""

    dialect = _schema.POSTGRES

    def __init__(
        self,
        path: str = "",
        *,
        readonly: bool = False,
        schema: str | None = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        redact: Redactor | None = redact_secrets,
        write_deadline_s: float = 60.0,
    ) -> None:
        if not path.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{path!r}: not a PostgreSQL URL; give postgresql://user@host:port/database")
        self.url = path
        self.path = mask_url(path)  # what messages (and the writer's) name
        self.readonly = readonly
        # applied to every text written (trajgraph/store/redact.py); None writes values as they are
        self.redact = redact
        self.write_deadline_s = max(0.0, float(write_deadline_s))
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


    def __repr__(self) -> str:
        return f"PostgresStore({self.path!r})"

    def _connection(self, timeout: float = 30.0) -> Any:
        pool = self._pool if self._pool is not None else self.setup()._pool
        assert pool is not None
        return pool.connection(timeout=timeout)

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._pool is not None:
                self._finalizer.detach()
                self._pool.close()
                self._pool = None

    # -- the hooks of the shared store (trajgraph/store/base.py) ---------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        for attempt in (0, 1):
            try:
                with self._connection(timeout=10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
                    return list(cur.execute(sql, params or None).fetchall())
            except (psycopg.Error, PoolTimeout) as exc:
                if attempt == 0 and _passes(exc) and not isinstance(exc, PoolTimeout):
                    continue  # a connection dropped since its last check: the pool gives a fresh one
                raise StoreError(f"{self.path}: cannot read the store ({_one_line(exc)})") from None
        raise AssertionError("unreachable")

    def _transaction(self, work: Callable[[Tx], None], n: int) -> None:
        """`work` in one transaction, retried whole while the failure passes, up to `write_deadline_s`."""
        deadline = time.monotonic() + self.write_deadline_s
        delay = 0.05
        while True:
            left = deadline - time.monotonic()
            try:
                with self._connection(timeout=max(0.5, min(2.0, left))) as conn, conn.transaction(), \
                        conn.cursor(row_factory=dict_row) as cur:
                    work(_Tx(cur))
                return
            except UnicodeEncodeError as exc:  # a lone surrogate: the caller writes it escaped
                raise UnstorableText(f"{type(exc).__name__}: {exc}") from exc
            except (psycopg.Error, PoolTimeout) as exc:  # the transaction rolled back: nothing of the batch landed
                if isinstance(exc, psycopg.DataError) and "NUL" in str(exc):
                    raise UnstorableText("a NUL character, which PostgreSQL text cannot hold") from exc
                if _passes(exc) and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                cause = f"{type(exc).__name__}: {_one_line(exc)}"
                if _passes(exc):
                    raise StoreUnavailableError(
                        f"{self.path}: could not write {n} row(s): the server stayed unreachable for "
                        f"{self.write_deadline_s:g} s, the write deadline ({cause}); nothing of the batch was written"
                    ) from exc
                raise StoreError(f"{self.path}: could not write {n} row(s) ({cause})") from exc

    def _search_table(self, index: SearchIndex, text: str, limit: int) -> list[dict[str, Any]]:
        keys = ["id"] if index.table == "runs" else ["run_id", "seq" if index.table != "search_nodes" else "id"]
        return self._query(_schema.POSTGRES.search_sql(index, keys, limit), [text])

    def _storable(self, item: Any) -> Any:
        """`item` with its plain text made storable: surrogates backslash-escaped, NUL as the text \\x00."""
        item = escape_text(item)
        if isinstance(item, tuple):  # a run update
            return (item[0], {k: _no_nul(v) for k, v in item[1].items()})
        changed = {k: _no_nul(v) for k, v in item.__dict__.items() if isinstance(v, str) and "\x00" in v}
        return item.replace(**changed) if changed else item


class _Tx:
    """The shared write code's view of a psycopg cursor inside a transaction."""

    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cur.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self.cur.execute(sql, params or None).fetchall())


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "\\x00") if isinstance(value, str) else value


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
