"""The store's on-disk schema: table DDL, the migrations between versions, and the version check.

Kept apart from store.py because it changes on its own clock: a schema change
appends a migration here (never edits one) and bumps `SCHEMA_VERSION` in
trajectory.py, while the Store's reads and writes stay as they are. `check()`
and `migrate()` are what `Store.setup()` runs on a freshly opened connection.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from trajgraph.errors import NotAStoreError, SchemaTooNewError
from trajgraph.trajectory import SCHEMA_VERSION

META = "_trajgraph_meta"

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    graph TEXT NOT NULL DEFAULT '',
    graph_path TEXT,
    kind TEXT NOT NULL DEFAULT 'record',
    status TEXT NOT NULL DEFAULT 'running',
    input TEXT,
    output TEXT,
    outcome REAL,
    task TEXT,
    parent_id TEXT REFERENCES runs(id),
    fork_step INTEGER,
    thread_id TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    started_at REAL NOT NULL,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS runs_graph_started ON runs(graph, started_at);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_id);
CREATE INDEX IF NOT EXISTS runs_thread ON runs(thread_id);
CREATE INDEX IF NOT EXISTS runs_task ON runs(task);

CREATE TABLE IF NOT EXISTS run_tags (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
);
CREATE INDEX IF NOT EXISTS run_tags_tag ON run_tags(tag);

CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    node TEXT NOT NULL,
    lg_step INTEGER,
    path TEXT NOT NULL DEFAULT '',
    namespace TEXT NOT NULL DEFAULT '',
    "update" TEXT,
    action TEXT,
    started_at REAL NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0,
    error TEXT,
    reward REAL,
    interrupted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS steps_node ON steps(node);

CREATE TABLE IF NOT EXISTS model_calls (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    step_seq INTEGER,
    model TEXT NOT NULL DEFAULT '',
    messages TEXT,
    response TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms REAL NOT NULL DEFAULT 0,
    token_ids TEXT,
    logprobs TEXT,
    error TEXT,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE IF NOT EXISTS search_nodes (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    parent_id INTEGER,
    depth INTEGER NOT NULL DEFAULT 0,
    action TEXT,
    action_text TEXT NOT NULL DEFAULT '',
    observation TEXT NOT NULL DEFAULT '',
    score REAL,
    value REAL,
    visits INTEGER NOT NULL DEFAULT 0,
    outcome REAL,
    terminal INTEGER NOT NULL DEFAULT 0,
    chosen INTEGER NOT NULL DEFAULT 0,
    invalid INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, id)
);

CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    prompt TEXT,
    chosen TEXT,
    rejected TEXT,
    chosen_score REAL,
    rejected_score REAL,
    node_id INTEGER,
    chosen_node INTEGER,
    rejected_node INTEGER,
    task TEXT
);
CREATE INDEX IF NOT EXISTS pairs_run ON pairs(run_id);
CREATE INDEX IF NOT EXISTS pairs_source ON pairs(source);

CREATE VIEW IF NOT EXISTS decision_steps AS
    SELECT run_id, seq, node, action, reward FROM steps WHERE action IS NOT NULL;
CREATE VIEW IF NOT EXISTS dpo_pairs AS
    SELECT prompt, chosen, rejected, chosen_score, rejected_score, source, run_id FROM pairs;
"""

# version -> SQL that brings a store from version-1 to version. Append, never edit.
MIGRATIONS: dict[int, str] = {
    1: SCHEMA_V1,
    2: """
ALTER TABLE steps ADD COLUMN task_id TEXT NOT NULL DEFAULT ''
""",
    # model_calls.messages then holds only the messages after the first prompt_shared of call prompt_ref's
    3: """
ALTER TABLE model_calls ADD COLUMN prompt_ref INTEGER;
ALTER TABLE model_calls ADD COLUMN prompt_shared INTEGER NOT NULL DEFAULT 0
""",
}


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
            for statement in MIGRATIONS[target].split(";\n"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(
            f"INSERT OR REPLACE INTO {META} VALUES ('schema_version', ?), ('app', 'trajgraph')",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


__all__ = ["META", "SCHEMA_V1", "MIGRATIONS", "check", "migrate", "execute_when_free"]
