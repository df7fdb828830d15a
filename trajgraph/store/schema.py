"""The store's schema, written once for every backend: tables, views, keys, search index, migrations.

Each backend renders this description in its own SQL through its `Dialect`
(trajgraph/store/dialect.py): `{REAL}` is SQLite's REAL and PostgreSQL's DOUBLE
PRECISION, `{SERIAL}` an AUTOINCREMENT or an identity column, `{VIEW}` and
`{ADD_COLUMN}` the dialect's "create if missing" forms. A `SearchIndex` entry is
the full-text index of one table, which each dialect builds in its own way
(SQLite: an FTS5 table in sqlite-utils' layout, brought up to date when it is
searched or the store closes, see `DeferredIndexing`; PostgreSQL: a GIN index
over a tsvector expression).

A schema change appends a migration here (never edits one) and bumps
`SCHEMA_VERSION` in trajgraph/trajectory.py; the migrations of a version run in one
transaction, so a store is at version N or N-1, never between.
"""

from __future__ import annotations

from dataclasses import dataclass

from trajgraph.trajectory import SCHEMA_VERSION

META = "_trajgraph_meta"


@dataclass(frozen=True)
class SearchIndex:
    """The full-text index of `table` over `columns` (JSON text or plain text): `Store.search()` reads it."""

    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class DeferredIndexing:
    """Version 5: `index` stops indexing each row as it is inserted and catches up in bulk instead.

    SQLite's per-row insert trigger tokenized every step on the recording hot path and
    halved write throughput (20,000 steps/s against 52,000 without it). Rows now land
    unindexed; a mark per table says up to which rowid the index is complete, and
    `Store.search()` (or closing the store) indexes the rows above it in one statement.
    Deletes and updates of indexed rows still keep the index exact through triggers.
    PostgreSQL's index is an expression index the database maintains: nothing to do.
    """

    index: SearchIndex


SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    graph TEXT NOT NULL DEFAULT '',
    graph_path TEXT,
    kind TEXT NOT NULL DEFAULT 'record',
    status TEXT NOT NULL DEFAULT 'running',
    input TEXT,
    output TEXT,
    outcome {REAL},
    task TEXT,
    parent_id TEXT REFERENCES runs(id),
    fork_step INTEGER,
    thread_id TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{{}}',
    error TEXT,
    started_at {REAL} NOT NULL,
    ended_at {REAL}
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
    started_at {REAL} NOT NULL DEFAULT 0,
    latency_ms {REAL} NOT NULL DEFAULT 0,
    error TEXT,
    reward {REAL},
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
    params TEXT NOT NULL DEFAULT '{{}}',
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms {REAL} NOT NULL DEFAULT 0,
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
    score {REAL},
    value {REAL},
    visits INTEGER NOT NULL DEFAULT 0,
    outcome {REAL},
    terminal INTEGER NOT NULL DEFAULT 0,
    chosen INTEGER NOT NULL DEFAULT 0,
    invalid INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    created_at {REAL} NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, id)
);

CREATE TABLE IF NOT EXISTS pairs (
    id {SERIAL},
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    prompt TEXT,
    chosen TEXT,
    rejected TEXT,
    chosen_score {REAL},
    rejected_score {REAL},
    node_id INTEGER,
    chosen_node INTEGER,
    rejected_node INTEGER,
    task TEXT
);
CREATE INDEX IF NOT EXISTS pairs_run ON pairs(run_id);
CREATE INDEX IF NOT EXISTS pairs_source ON pairs(source);

{VIEW} decision_steps AS
    SELECT run_id, seq, node, action, reward FROM steps WHERE action IS NOT NULL;
{VIEW} dpo_pairs AS
    SELECT prompt, chosen, rejected, chosen_score, rejected_score, source, run_id FROM pairs
"""

# What full-text search covers: what runs were given, said and did (observations, actions, model
# messages, errors). Each is one SearchIndex; `Store.search()` reports hits by table.
SEARCH_MARKS = "_trajgraph_search"  # SQLite: per indexed table, the highest rowid its index holds

SEARCH_INDEXES = (
    SearchIndex("runs", ("input", "output", "error")),
    SearchIndex("steps", ("update", "action", "error")),
    SearchIndex("model_calls", ("messages", "response", "error")),
    SearchIndex("search_nodes", ("action_text", "observation", "reason")),
)

# version -> what brings a store from version-1 to version: SQL (statements end with ";\n"), SearchIndex or
# DeferredIndexing entries. Append, never edit.
Migration = str | SearchIndex | DeferredIndexing
MIGRATIONS: dict[int, tuple[Migration, ...]] = {
    1: (SCHEMA_V1,),
    2: ("ALTER TABLE steps {ADD_COLUMN} task_id TEXT NOT NULL DEFAULT ''",),
    # model_calls.messages then holds only the messages after the first prompt_shared of call prompt_ref's
    3: ("ALTER TABLE model_calls {ADD_COLUMN} prompt_ref INTEGER;\n"
        "ALTER TABLE model_calls {ADD_COLUMN} prompt_shared INTEGER NOT NULL DEFAULT 0",),
    4: SEARCH_INDEXES,  # full-text search (`Store.search`, `trajgraph runs --search`)
    5: tuple(DeferredIndexing(index) for index in SEARCH_INDEXES),  # off the write path (issue 20)
    # fewer B-trees per recorded row (issue 20): a run's parent, thread and task are indexed only where set (most
    # recorded runs have none, and `runs(parent_id=...)` & co. still use the index), and no reader looks steps up
    # by node across runs
    6: ("DROP INDEX IF EXISTS steps_node;\n"
        "DROP INDEX IF EXISTS runs_parent;\n"
        "DROP INDEX IF EXISTS runs_thread;\n"
        "DROP INDEX IF EXISTS runs_task;\n"
        "CREATE INDEX IF NOT EXISTS runs_parent_set ON runs(parent_id) WHERE parent_id IS NOT NULL;\n"
        "CREATE INDEX IF NOT EXISTS runs_thread_set ON runs(thread_id) WHERE thread_id IS NOT NULL;\n"
        "CREATE INDEX IF NOT EXISTS runs_task_set ON runs(task) WHERE task IS NOT NULL",),
}

# the key of each table a row is upserted by (pairs are only ever appended; run_tags rewritten per run)
KEYS = {"runs": ("id",), "steps": ("run_id", "seq"), "model_calls": ("run_id", "seq"), "search_nodes": ("run_id", "id")}

assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1)), "a migration per schema version"

__all__ = ["META", "KEYS", "MIGRATIONS", "Migration", "SCHEMA_V1", "SEARCH_INDEXES", "SEARCH_MARKS", "DeferredIndexing",
           "SearchIndex"]
