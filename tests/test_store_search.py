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
from trajgraph.errors import StoreError
from trajgraph.store import Store
from trajgraph.store.dialect import SQLITE
from trajgraph.store.schema import MIGRATIONS
from trajgraph.trajectory import SCHEMA_VERSION, Run, Step

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
    assert conn.execute("SELECT value FROM _trajgraph_meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"steps_ad", "steps_au", "runs_au", "model_calls_ad", "search_nodes_ad"} <= triggers
    assert not {t for t in triggers if t.endswith("_ai")}  # v5: inserts are indexed in bulk, not by a trigger
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
    store = Store(db)
    _seed(store)
    store.close()  # closing brings the index up to date for readers outside trajgraph
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


def _indexed(db: Path, table: str) -> int:
    """Rows the FTS5 index of `table` holds (its docsize shadow table has one row per indexed row)."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}_fts_docsize").fetchone()[0])


def test_writes_leave_the_index_to_the_next_search_which_catches_up_once(tmp_path: Path) -> None:
    """Issue 20: indexing each insert halved write speed; rows are indexed in bulk when searched."""
    db = tmp_path / "s.db"
    store = Store(db)
    _seed(store)
    assert _indexed(db, "steps") == 0  # the write path did not touch the index
    assert [(h.run_id, h.key) for h in store.search("brass lantern")] == [("cellar-run", 1)]
    assert _indexed(db, "steps") == 3
    assert store.index_for_search() == 0  # nothing left to index
    store.write(steps=[Step(run_id="other-run", seq=1, node="env", update={"observation": "a brass bell"})])
    assert store.index_for_search() == 1 and _indexed(db, "steps") == 4
    assert sorted(h.run_id for h in store.search("brass")) == ["cellar-run", "other-run"]


def test_read_only_search_sees_rows_the_index_lacks_without_writing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    writer = Store(db)
    _seed(writer)
    writer.flush()
    before = db.read_bytes()
    reader = Store(db, readonly=True)
    hits = reader.search("lantern")
    assert [(h.run_id, h.table, h.key) for h in hits] == [("cellar-run", "steps", 1)] and "brass lantern" in hits[0].snippet
    assert reader.search("volcano") == [] and _indexed(db, "steps") == 0 and db.read_bytes() == before
    with pytest.raises(StoreError, match="read-only"):
        reader.index_for_search()
    writer.search("meadow")  # indexes everything; the reader's next search finds it in the index alone
    assert [h.run_id for h in reader.search("lantern")] == ["cellar-run"]


def test_updates_and_deletes_keep_the_index_exact(tmp_path: Path) -> None:
    """Indexed rows are taken out of the index on update and delete (triggers); when the last rows go, a
    rowid SQLite hands out again is indexed again (the mark goes down with them)."""
    db = tmp_path / "s.db"
    store = Store(db)
    _seed(store)
    store.index_for_search()
    store.write(steps=[Step(run_id="cellar-run", seq=1, node="env", update={"observation": "an iron gate"})])  # upsert
    assert store.search("brass") == [] and [(h.run_id, h.key) for h in store.search("iron")] == [("cellar-run", 1)]
    store.delete_runs(["other-run"])  # the last rows by rowid go
    assert store.search("meadow") == []
    store.write(runs=[Run(id="new-run", graph="g", started_at=3.0)],
                steps=[Step(run_id="new-run", seq=0, node="env", update={"observation": "a dusty attic"})])
    assert [h.run_id for h in store.search("attic")] == ["new-run"]
    with sqlite3.connect(db) as conn:  # the index agrees with the table row for row
        conn.execute("INSERT INTO steps_fts(steps_fts, rank) VALUES ('integrity-check', 1)")
