"""Full-text search (issue 17): `Store.search(text)` and `trajgraph runs --search TEXT` on SQLite and PostgreSQL,
the migration that indexes an older store's rows, and the triggers that keep SQLite's index in sqlite-utils' layout."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from tests._services import Postgres
from trajgraph.cli import app
from trajgraph.store import Store
from trajgraph.store.dialect import SQLITE
from trajgraph.store.schema import MIGRATIONS
from trajgraph.trajectory import Run, Step

OBSERVATION = "You are in a cellar.\nA brass lantern hangs on a hook."


def _seed(store: Any) -> None:
    store.write(runs=[Run(id="cellar-run", graph="g", status="succeeded", started_at=1.0),
                      Run(id="other-run", graph="g", status="succeeded", started_at=2.0)],
                steps=[Step(run_id="cellar-run", seq=0, node="env", update={"observation": "start"}),
                       Step(run_id="cellar-run", seq=1, node="env", update={"observation": OBSERVATION}),
                       Step(run_id="other-run", seq=0, node="env", update={"observation": "a sunny meadow"})])


def _runs_search(db: str, text: str, *more: str) -> Any:
    result = CliRunner().invoke(app, ["runs", "--db", db, "--search", text, "--json", *more])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_runs_search_finds_a_step_by_a_word_of_its_observation_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _seed(Store(db))
    (row,) = _runs_search(str(db), "brass")
    assert row["id"] == "cellar-run" and row["matches"][0]["table"] == "steps" and row["matches"][0]["key"] == 1
    assert "brass lantern" in row["matches"][0]["snippet"]
    assert _runs_search(str(db), "meadow")[0]["id"] == "other-run" and _runs_search(str(db), "volcano") == []
    assert _runs_search(str(db), "brass", "--status", "failed") == []  # the other filters still apply
    table = CliRunner().invoke(app, ["runs", "--db", str(db), "--search", "lantern"]).stdout
    assert "cellar-run" in table and "other-run" not in table and "step 1:" in table


def test_runs_search_finds_a_step_by_a_word_of_its_observation_postgres(postgres: Postgres) -> None:
    store = postgres.store()
    _seed(store)
    url = f"{postgres.url}&options=-csearch_path%3D{store.schema}"
    (row,) = _runs_search(url, "brass")
    assert row["id"] == "cellar-run" and row["matches"][0]["key"] == 1 and "brass lantern" in row["matches"][0]["snippet"]
    assert _runs_search(url, "lantern hook")[0]["id"] == "cellar-run" and _runs_search(url, "volcano") == []
    plan = _plan(store, "steps")
    assert "steps_search" in plan, plan  # the GIN index answers it, not a scan of every step
    postgres.close_stores()


def _plan(store: Any, table: str) -> str:
    from trajgraph.adapters.postgres._schema import POSTGRES
    from trajgraph.store.schema import SEARCH_INDEXES

    index = next(i for i in SEARCH_INDEXES if i.table == table)
    with psycopg.connect(store._conninfo, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        rows = conn.execute("EXPLAIN " + POSTGRES.search_sql(index, ["run_id", "seq"], 10), ["brass"]).fetchall()
    return "\n".join(r[0] for r in rows)


def _v3_store(path: Path) -> None:
    """A store as trajgraph wrote it before full-text search (schema v3), with an observation in it."""
    conn = sqlite3.connect(path)
    for version in (1, 2, 3):
        for entry in MIGRATIONS[version]:
            for statement in SQLITE.statements(entry):
                conn.execute(statement)
    conn.execute("CREATE TABLE _trajgraph_meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO _trajgraph_meta VALUES ('schema_version', '3'), ('app', 'trajgraph')")
    conn.execute("INSERT INTO runs (id, graph, status, started_at) VALUES ('old-run', 'g', 'succeeded', 1.0)")
    conn.execute('INSERT INTO steps (run_id, seq, node, "update") VALUES (?, 0, ?, ?)',
                 ["old-run", "env", json.dumps({"observation": OBSERVATION})])
    conn.commit()
    conn.close()


def test_an_older_store_is_indexed_by_its_migration(tmp_path: Path) -> None:
    """`runs --search` on a v3 file: read-only it has no index, so the command opens it writable once and the
    v4 migration indexes the rows already there; later writes are indexed by the triggers."""
    db = tmp_path / "old.db"
    _v3_store(db)
    (row,) = _runs_search(str(db), "brass")
    assert row["id"] == "old-run" and row["matches"][0]["key"] == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM _trajgraph_meta WHERE key = 'schema_version'").fetchone() == ("4",)
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"steps_ai", "steps_ad", "steps_au", "runs_au", "model_calls_ai", "search_nodes_ad"} <= triggers
    store = Store(db)
    store.write(steps=[Step(run_id="old-run", seq=1, node="env", update={"observation": "an iron gate"})])
    assert [(h.run_id, h.key) for h in store.search("iron gate")] == [("old-run", 1)]


def test_read_only_old_store_says_how_to_add_the_index(tmp_path: Path) -> None:
    from trajgraph.errors import SearchUnavailableError

    db = tmp_path / "old.db"
    _v3_store(db)
    with pytest.raises(SearchUnavailableError, match="predates full-text search"):
        Store(db, readonly=True).setup().search("brass")


def test_sqlite_index_is_sqlite_utils_own_layout(tmp_path: Path) -> None:
    """sqlite-utils (and so its CLI and Datasette) finds the FTS tables and searches them as its own."""
    import sqlite_utils

    db = tmp_path / "s.db"
    _seed(Store(db))
    table = sqlite_utils.Database(db).table("steps")
    assert table.detect_fts() == "steps_fts"
    assert [(r["run_id"], r["seq"]) for r in table.search("lantern", columns=["run_id", "seq"])] == [("cellar-run", 1)]


def test_older_postgres_store_gets_its_search_index(postgres: Postgres) -> None:
    from trajgraph.adapters.postgres import PostgresStore
    from trajgraph.adapters.postgres._schema import POSTGRES

    schema = postgres.schema()
    with psycopg.connect(PostgresStore(postgres.url, schema=schema)._conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        for version in (1, 2, 3):
            for entry in MIGRATIONS[version]:
                for statement in POSTGRES.statements(entry):
                    conn.execute(statement)
        conn.execute("CREATE TABLE _trajgraph_meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO _trajgraph_meta VALUES ('schema_version', '3')")
        conn.execute("INSERT INTO runs (id, started_at) VALUES ('old-run', 1.0)")
        conn.execute('INSERT INTO steps (run_id, seq, node, "update") VALUES (%s, 0, %s, %s)',
                     ["old-run", "env", json.dumps({"observation": OBSERVATION})])
        assert conn.execute("SELECT to_regclass('steps_search')").fetchone() == (None,)
    store = PostgresStore(postgres.url, schema=schema).setup()
    postgres.made.append(store)
    assert [(h.run_id, h.table, h.key) for h in store.search("brass")] == [("old-run", "steps", 0)]
    assert "steps_search" in _plan(store, "steps")
    postgres.close_stores()
