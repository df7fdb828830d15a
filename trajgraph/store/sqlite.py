"""`SQLiteStore`: the store in one SQLite file (WAL, busy timeout, foreign keys).

The queries are the shared ones (trajgraph/store/base.py) in SQLite's dialect
(trajgraph/store/dialect.py); this module is SQLite's connection handling: open
and check the file, migrate its schema (trajgraph/store/schema.py), one write
transaction at a time across processes, checkpoints off the commit path (`Checkpoints`), and fork safety. Plain tables with
foreign keys and JSON as TEXT, so Datasette or the `sqlite-utils` CLI can browse
a store (its full-text indexes too). Opening a file that is not a store, is
corrupt, or is newer than this code raises a one-line `StoreError` and writes
nothing. Nothing here unpickles: a column that does not hold JSON text reads as
`{"__tg_unreadable__": reason}` (logged), whatever it holds, so one damaged row
never makes a whole listing fail.

A reader of the raw tables should know one space saver: a conversation's
prompt is not stored again with every model call; `model_calls.messages` holds
only the messages after the first `prompt_shared` of call `prompt_ref` (the API
returns whole prompts).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from trajgraph.errors import NotAStoreError, SchemaTooNewError, SearchUnavailableError, StoreError
from trajgraph.store.base import Store, Tx, UnstorableText, sql_limit
from trajgraph.store.dialect import SQLITE
from trajgraph.store.redact import Redactor, redact_secrets
from trajgraph.store.schema import META, MIGRATIONS, SEARCH_INDEXES, SEARCH_MARKS, SearchIndex
from trajgraph.trajectory import SCHEMA_VERSION

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


class SQLiteStore(Store):
    """A trajgraph store in one SQLite file. Thread-safe; several processes may write.

    >>> store = Store("runs.db")          # created on first use (an SQLiteStore)
    >>> store.runs(status="failed")[:3]
    """

    dialect = SQLITE

    def __init__(self, path: str | Path = "trajgraph.db", *, readonly: bool = False,
                 redact: Redactor | None = redact_secrets) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # applied to every text written (trajgraph/store/redact.py); None writes values as they are
        self.redact = redact
        self._lock = threading.RLock()
        self._db: Database | None = None
        self._writer: Any = None  # the background writer of recorded runs (trajgraph/store/writer.py), once used
        self._checkpoints = Checkpoints(self.path)
        _STORES.add(self)

    @classmethod
    def from_conn_string(cls, conn_string: str) -> SQLiteStore:
        """Checkpointer-style constructor: a path or `sqlite:///path`."""
        return cls(conn_string.removeprefix("sqlite:///"))

    # -- connection and schema -------------------------------------------------

    @property
    def db(self) -> Database:
        if self._db is None:
            self.setup()
        assert self._db is not None
        return self._db

    def setup(self) -> SQLiteStore:
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
                    version = check(conn, self.path)
                except NotAStoreError as exc:
                    raise self._permission_problem() or exc from None
                if version < SCHEMA_VERSION and not self.readonly:
                    migrate(conn)
                # WAL + NORMAL: a commit survives a killed process (not a power cut) without an fsync each
                conn.execute("PRAGMA synchronous = NORMAL")
                if not self.readonly:
                    conn.execute("PRAGMA wal_autocheckpoint = 0")  # no commit copies the WAL back: `Checkpoints` does
            except BaseException:
                conn.close()
                raise
            self._db = Database(conn)
        if not self.readonly:
            self.mark_interrupted()
        return self

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

    def close(self) -> None:
        """Write what is pending, bring the full-text index up to date (so `sqlite-utils search` and Datasette
        see every row), and close the file."""
        self.flush()
        with self._lock:
            if self._db is not None:
                if not self.readonly:
                    try:
                        self.index_for_search()
                    except StoreError as exc:  # the rows are safe; the next search indexes them
                        log.warning("trajgraph: %s: full-text index not brought up to date (%s)", self.path, exc)
                self._checkpoints.join()  # after the index's own writes, which may have started one
                self._db.conn.close()
                self._db = None

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- the hooks of the shared store (trajgraph/store/base.py) ---------------------

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return list(self.db.query(sql, params))
            except sqlite3.DatabaseError as exc:  # damaged after opening, or locked for too long
                raise StoreError(f"{self.path}: cannot read the store ({exc})") from None

    def _transaction(self, work: Callable[[Tx], None], n: int) -> None:
        """`work` inside BEGIN IMMEDIATE ... COMMIT: one writer at a time across processes."""
        with self._lock:
            conn = self.db.conn
            try:
                execute_when_free(conn, "BEGIN IMMEDIATE", patience_s=2.5)  # on top of busy_timeout
                try:
                    work(_Tx(conn))
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
            except UnicodeEncodeError as exc:  # text UTF-8 cannot hold (a lone surrogate): the caller escapes it
                raise UnstorableText(f"{type(exc).__name__}: {exc}") from exc
            except (sqlite3.Error, UnicodeError, OverflowError, ValueError) as exc:
                raise write_error(self.path, exc, n) from exc
            self._checkpoints.wrote(n)

    def _search_table(self, index: SearchIndex, text: str, limit: int) -> list[dict[str, Any]]:
        """FTS5 through sqlite-utils (imported here only: with pandas it costs ~0.4 s of start-up)."""
        import sqlite_utils

        keys = ["id"] if index.table == "runs" else ["run_id", "seq" if index.table != "search_nodes" else "id"]
        if self._writer is not None and self._writer.pending:
            self._writer.flush(raise_errors=False)
        with self._lock:
            db = sqlite_utils.Database(self.db.conn)
            table = db.table(index.table)
            if table.detect_fts() is None:
                raise SearchUnavailableError(f"{self.path}: this store predates full-text search; open it once writable "
                                 "(any command that writes to it, or Store(path).setup()) to add the index")
            try:
                span = self._unindexed(index) if self.readonly else None
                if not self.readonly:
                    self._catch_up(index)
                hits = list(table.search(text, columns=[*keys, *index.columns], limit=limit, include_rank=True, quote=True))
                if span is not None:  # read-only with rows the index lacks: search those apart, without writing
                    setup, query = SQLITE.tail_search(index, span[0], keys)
                    for statement in setup:
                        db.conn.execute(statement)
                    hits += db.query(query, [db.quote_fts(text), limit])
                    hits.sort(key=lambda row: row["rank"])
                return hits[:limit]
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: cannot search the store ({exc})") from None

    def index_for_search(self) -> int:
        """Index the rows written since the full-text index was last brought up to date; how many.

        Writes leave new rows out of the index (indexing each insert halved write speed);
        `search()` and `close()` call this, so only a reader outside trajgraph (Datasette,
        `sqlite-utils search`) on a store still open for recording needs to.
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only; its search reads the rows the index lacks without writing")
        with self._lock:
            return sum(self._catch_up(index) for index in SEARCH_INDEXES)

    def _unindexed(self, index: SearchIndex) -> tuple[int, int] | None:
        """(mark, last rowid) when rows of `index.table` above the mark are not indexed yet, else None."""
        if not self.db.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [SEARCH_MARKS]).fetchone():
            return None  # a v4 store opened read-only: its insert triggers indexed every row
        pending = next(self.db.query(SQLITE.pending(index)))
        if pending["upto"] is None or pending["last"] <= pending["upto"]:
            return None
        return int(pending["upto"]), int(pending["last"])

    def _catch_up(self, index: SearchIndex) -> int:
        """Index one table's unindexed rows in one transaction; how many there were."""
        span = self._unindexed(index)
        if span is None:
            return 0

        def work(tx: Tx) -> None:
            for statement in SQLITE.catch_up(index):
                tx.executemany(statement, [[]])

        self._transaction(work, span[1] - span[0])
        return span[1] - span[0]


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


_CHECKPOINT_ROWS = 1000  # rows committed between checkpoints (SQLite's own default: every 1,000 WAL pages)


class Checkpoints:
    """Copies the WAL back into the store file on a thread of its own, so that no commit waits for it.

    SQLite's default runs a checkpoint inside the commit that takes the WAL past 1,000 pages: then that
    commit copies and syncs megabytes while the recorded run behind it waits (in `record_overhead.py`, one
    commit in about 40, 2% of a run on average). The store's connection does not checkpoint
    (`wal_autocheckpoint = 0`); every `_CHECKPOINT_ROWS` rows committed start a PASSIVE checkpoint on a
    connection of its own in a thread (SQLite releases the GIL while it copies), which blocks no writer
    and no reader. A checkpoint that fails or is cut short loses nothing: the rows stay in the WAL, and
    the next one (or the last connection's close) copies them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows = 0
        self._thread: threading.Thread | None = None

    def wrote(self, rows: int) -> None:
        self._rows += rows
        if self._rows >= _CHECKPOINT_ROWS and (self._thread is None or not self._thread.is_alive()):
            self._rows = 0
            thread = threading.Thread(target=self._run, name=f"trajgraph-checkpoint:{self.path}", daemon=True)
            try:
                thread.start()
                self._thread = thread  # only a started thread: `join` cannot join one that never ran
            except RuntimeError as exc:  # no thread at interpreter exit (3.12+) or at a thread limit: the next
                # checkpoint, or the last connection's close, copies these pages; nothing to tell the user
                log.debug("trajgraph: %s: WAL checkpoint not started (%s)", self.path, exc)

    def join(self) -> None:
        """Wait for a checkpoint in progress (before the store closes)."""
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            # mode=rw: a store moved or deleted meanwhile is not created again, empty, by its housekeeping
            conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=rw", uri=True, timeout=30)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:  # housekeeping: the rows are safe in the WAL
            log.warning("trajgraph: %s: WAL checkpoint skipped (%s); the next one copies its pages", self.path, exc)


_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
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


class _Tx:
    """The shared write code's view of an SQLite connection inside a transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(Database(self.conn).query(sql, params))


# -- the file's schema ----------------------------------------------------------------------


def check(conn: sqlite3.Connection, path: Path) -> int:
    """Return the file's schema version (0 for a new file); raise on a foreign file."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise NotAStoreError(f"{path}: not a trajgraph store (not an SQLite database); choose another path") from None
        raise NotAStoreError(f"{path}: corrupt SQLite file ({exc}); restore it from a copy or choose another path") from None
    if not tables:
        return 0
    if META not in tables:
        raise NotAStoreError(
            f"{path}: an SQLite file but not a trajgraph store (no {META} table); choose another path"
        )
    try:
        row = conn.execute(f"SELECT value FROM {META} WHERE key='schema_version'").fetchone()
        integrity = conn.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise NotAStoreError(f"{path}: corrupt trajgraph store ({exc})") from None
    if integrity is None or integrity[0] != "ok":
        raise NotAStoreError(f"{path}: corrupt trajgraph store (integrity check: {integrity and integrity[0]})")
    if row is None:
        raise NotAStoreError(f"{path}: trajgraph store without a schema version; it is damaged")
    version = _version(path, row[0])
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path}: store schema v{version} is newer than this trajgraph (v{SCHEMA_VERSION}); upgrade trajgraph"
        )
    return version


def _version(path: object, value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise NotAStoreError(f"{path}: not a valid store: schema_version is {str(value)[:40]!r}, not a number; "
                             "restore the file from a copy") from None


def execute_when_free(conn: sqlite3.Connection, sql: str, patience_s: float) -> None:
    """Run `sql`, retrying with backoff while another process holds the file.

    SQLite answers some statements with an immediate "database is locked" instead of
    waiting out `busy_timeout` (it skips the busy handler where waiting could
    deadlock): switching to WAL while another connection migrates a new file, or
    `BEGIN IMMEDIATE` under heavy contention. Several processes sharing one store
    must wait their turn there.
    """
    deadline = time.monotonic() + patience_s
    delay = 0.005
    while True:
        try:
            conn.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(
                    f"database is locked: another process held the store for {patience_s:g} s ({sql})"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction (re-reading the version under the lock)."""
    execute_when_free(conn, "PRAGMA journal_mode = WAL", patience_s=30)
    conn.execute("BEGIN IMMEDIATE")  # one migrator at a time across processes
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute(f"SELECT value FROM {META} WHERE key='schema_version'").fetchone()
        current = _version("store", row[0]) if row else 0
        for target in range(current + 1, SCHEMA_VERSION + 1):
            for entry in MIGRATIONS[target]:
                for statement in SQLITE.statements(entry):
                    conn.execute(statement)
        conn.execute(
            f"INSERT OR REPLACE INTO {META} VALUES ('schema_version', ?), ('app', 'trajgraph')",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


Store.file_backend = SQLiteStore  # `Store("runs.db")` opens this class

__all__ = ["SQLiteStore", "Database", "check", "migrate", "execute_when_free", "sql_limit", "write_error"]
