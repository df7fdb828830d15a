"""adapters/postgres: the store conformance suite on PostgreSQL, schema parity with SQLite,
concurrent setup, bad configuration as one line, dropped connections, recording into it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

import trajgraph as tg
from tests._services import Postgres
from trajgraph.adapters.postgres import PostgresStore
from trajgraph.adapters.postgres import _schema as pg_schema
from trajgraph.errors import ConfigError, NotAStoreError, SchemaTooNewError, StoreError
from trajgraph.store import SQLiteStore, Store, open_store
from trajgraph.store.rows import JSON_FIELDS
from trajgraph.store.schema import MIGRATIONS
from trajgraph.testing.store_suite import CHECKS, check_outage, check_processes_writing_at_once
from trajgraph.trajectory import SCHEMA_VERSION, ModelCall, PreferencePair, Run, SearchNode, Step


@pytest.fixture(autouse=True)
def _close_stores(postgres: Postgres) -> Any:
    yield
    postgres.close_stores()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_conformance_postgres(check: Any, postgres: Postgres) -> None:
    check(postgres.store)


def test_store_outage_postgres(postgres: Postgres) -> None:
    """The throwaway server stopped (pg_ctl stop -m fast) and started again 3 s later while runs are written."""
    check_outage(postgres.store, postgres.outage)


def test_processes_writing_at_once_sqlite(tmp_path: Path) -> None:
    """The same multi-process check on SQLite (it is in CHECKS too; named here so both backends show)."""
    check_processes_writing_at_once(lambda: Store(tmp_path / "p.db").setup())


def _sql(pg: PostgresStore, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Raw SQL on the store's database (and schema), outside the store."""
    with psycopg.connect(pg._conninfo, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return list(cur.fetchall()) if cur.description else []


def test_store_url_dispatches_to_postgres_and_core_stays_light(postgres: Postgres) -> None:
    store = tg.Store(postgres.url)
    assert type(store) is PostgresStore and isinstance(store, Store) and store.setup().count("runs") >= 0
    assert type(open_store(postgres.url)) is PostgresStore and type(open_store("sqlite:///x.db")) is SQLiteStore
    assert not isinstance(store, SQLiteStore) and isinstance(open_store("sqlite:///x.db"), Store)
    code = "import sys, trajgraph; print(any(m.startswith(('psycopg', 'trajgraph.adapters')) for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_schema_matches_sqlite_column_for_column(postgres: Postgres, tmp_path: Path) -> None:
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))  # one description, rendered by each dialect
    pg = postgres.store()
    lite = sqlite3.connect(Store(tmp_path / "s.db").setup().path)
    for table in [*JSON_FIELDS, "run_tags", "_trajgraph_meta"]:
        lite_cols = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
        pg_cols = [r[0] for r in _sql(pg, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                                          "AND table_name = %s ORDER BY ordinal_position", [pg.schema, table])]
        assert pg_cols == lite_cols, table
    views = {r[0] for r in _sql(pg, "SELECT table_name FROM information_schema.views WHERE table_schema = %s", [pg.schema])}
    assert views == {"decision_steps", "dpo_pairs"}
    assert _sql(pg, f"SELECT value FROM {pg.schema}._trajgraph_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


def _batch() -> dict[str, Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    ai = AIMessage(content="é ✓ \u0000 \"q\"", tool_calls=[{"name": "add", "args": {"a": 1.5, "b": [None, True]}, "id": "c1", "type": "tool_call"}])
    return dict(
        runs=[Run(id="r1", graph="g", input={"messages": [HumanMessage(content="hi", id="m0")]}, output={"x": float("nan")},
                  tags=("a",), metadata={"k": {"n": 10**20}}, started_at=5.0)],
        steps=[Step(run_id="r1", seq=0, node="agent", update={"messages": [ai]}, action={"messages": [ai]})],
        model_calls=[ModelCall(run_id="r1", seq=0, messages=[HumanMessage(content="hi")], response=ai, token_ids=[1, 2], logprobs=[-0.5, None])],
        search_nodes=[SearchNode(run_id="r1", id=0, action={"action": "go"}, created_at=1.0)],
        pairs=[PreferencePair(run_id="r1", source="rro", prompt={"task": "t"}, chosen={"text": "a"}, rejected={"text": "b"})],
    )


def test_json_text_is_byte_identical_with_sqlite(postgres: Postgres, tmp_path: Path) -> None:
    pg, lite = postgres.store(), Store(tmp_path / "s.db").setup()
    pg.write(**_batch())
    lite.write(**_batch())
    raw = sqlite3.connect(lite.path)
    for table, cols in JSON_FIELDS.items():
        select = ", ".join(f'"{c}"' for c in cols)
        want = raw.execute(f"SELECT {select} FROM {table}").fetchall()
        got = _sql(pg, f"SELECT {select} FROM {pg.schema}.{table}")
        assert got == want and got, table


def _setup_in_child(url: str, schema: str) -> None:
    PostgresStore(url, schema=schema).setup().write(runs=[Run(id=f"w{multiprocessing.current_process().pid}")])


def test_setup_from_many_processes_at_once_migrates_once(postgres: Postgres) -> None:
    """Workers of a fresh job all call setup() together: one migrates (under the advisory lock), all succeed."""
    schema = postgres.schema()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_setup_in_child, args=(postgres.url, schema)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 6
    store = PostgresStore(postgres.url, schema=schema).setup()
    assert store.count("runs") == 6
    assert _sql(store, f"SELECT key, value FROM {schema}._trajgraph_meta ORDER BY key") == [("app", "trajgraph"), ("schema_version", str(SCHEMA_VERSION))]


def test_older_store_is_migrated_forward(postgres: Postgres) -> None:
    """A v1 store (no steps.task_id, no prompt sharing columns) reads and writes after setup()."""
    schema = postgres.schema()
    with psycopg.connect(PostgresStore(postgres.url, schema=schema)._conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        for statement in pg_schema.POSTGRES.render(cast(str, MIGRATIONS[1][0])):
            conn.execute(statement)
        conn.execute("CREATE TABLE _trajgraph_meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO _trajgraph_meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO runs (id, started_at) VALUES ('old', 1.0)")
    store = PostgresStore(postgres.url, schema=schema).setup()
    store.write(steps=[Step(run_id="old", seq=0, node="n", task_id="t9")])
    assert store.steps("old")[0].task_id == "t9" and store.run("old").id == "old"


def _one_line(exc: BaseException, *words: str) -> None:
    message = str(exc)
    assert "\n" not in message and all(w in message for w in words), message


def test_newer_schema_is_refused_and_nothing_written(postgres: Postgres) -> None:
    store = postgres.store()
    _sql(store, f"UPDATE {store.schema}._trajgraph_meta SET value = %s WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    before = _sql(store, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", [store.schema])
    with pytest.raises(SchemaTooNewError) as info:
        PostgresStore(postgres.url, schema=store.schema).setup()
    _one_line(info.value, f"v{SCHEMA_VERSION + 1}", "upgrade trajgraph")
    assert _sql(store, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", [store.schema]) == before
    assert _sql(store, f"SELECT value FROM {store.schema}._trajgraph_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION + 1),)]


def test_foreign_runs_table_is_refused(postgres: Postgres) -> None:
    schema = postgres.schema()
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.runs (id INTEGER PRIMARY KEY, customer TEXT)")
    with pytest.raises(NotAStoreError) as info:
        PostgresStore(postgres.url, schema=schema).setup()
    _one_line(info.value, "not a trajgraph store")
    with psycopg.connect(postgres.url) as conn:  # untouched: no meta table was created beside it
        assert conn.execute("SELECT to_regclass(%s)", [f"{schema}._trajgraph_meta"]).fetchone() == (None,)


@pytest.mark.parametrize(
    ("url", "error", "words"),
    [
        ("postgresql://u@h:notaport/db", ConfigError, "malformed PostgreSQL URL"),
        ("postgresql://h/db?nonsense=1", ConfigError, "malformed PostgreSQL URL"),
        ("postgresql://[::1/db", ConfigError, "malformed PostgreSQL URL"),
        ("mysql://h/db", ConfigError, "unknown store URL scheme"),
    ],
)
def test_bad_url_is_one_line(url: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        Store(url).setup()
    _one_line(info.value, words)


def test_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://alice:s3cret@/db?host={tmp_path}&connect_timeout=2"  # a socket folder with no server in it
    with pytest.raises(StoreError) as info:
        Store(url).setup()
    _one_line(info.value, "cannot connect", "check that the server runs")
    assert "s3cret" not in str(info.value) and "alice:***@" in str(info.value)


def test_missing_extra_is_one_line() -> None:
    code = ("import sys; sys.modules['psycopg'] = None\nimport trajgraph as tg\n"
            "try:\n    tg.Store('postgresql://h/db')\nexcept tg.ConfigError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.endswith("pip install 'trajgraph[postgres]'") and "\n" not in out, out


def test_readonly_store(postgres: Postgres) -> None:
    with pytest.raises(StoreError, match="no trajgraph store here yet"):
        PostgresStore(postgres.url, schema=postgres.schema(), readonly=True).setup()
    store = postgres.store()
    store.write(runs=[Run(id="r")])
    ro = PostgresStore(postgres.url, schema=store.schema, readonly=True)
    assert [r.id for r in ro.runs()] == ["r"]
    with pytest.raises(StoreError, match="read-only"):
        ro.write(runs=[Run(id="x")])


def test_dropped_connections_are_replaced_before_use(postgres: Postgres) -> None:
    """A server (or proxy) that drops idle connections costs a reconnect, not a failed read or write."""
    store = postgres.store()
    store.write(runs=[Run(id="before")])
    killed = _sql(store, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'trajgraph' AND pid <> pg_backend_pid()")
    assert killed and all(k[0] for k in killed)
    store.write(runs=[Run(id="after")])
    assert {r.id for r in store.runs()} == {"before", "after"}


def test_failed_write_is_one_store_error_and_keeps_nothing(postgres: Postgres) -> None:
    store = postgres.store()
    with pytest.raises(StoreError) as info:
        store.write(runs=[Run(id="ok")], steps=[Step(run_id="ghost", seq=0, node="n")])
    _one_line(info.value, "could not write 2 row(s)", "ForeignKeyViolation")
    assert store.count("runs") == 0


def test_rewriting_a_run_keeps_its_steps(postgres: Postgres) -> None:
    store = postgres.store()
    store.write(runs=[Run(id="r", status="running")], steps=[Step(run_id="r", seq=0, node="n")])
    store.write(runs=[store.run("r").replace(status="succeeded")])
    assert store.run("r").status == "succeeded" and len(store.steps("r")) == 1


def test_delete_runs(postgres: Postgres) -> None:
    store = postgres.store()
    store.write(**_batch())
    store.write(runs=[Run(id="keep")])
    assert store.delete_runs(["r1"]) == 1
    assert [r.id for r in store.runs()] == ["keep"]
    assert [store.count(t) for t in ("steps", "model_calls", "search_nodes", "pairs")] == [0, 0, 0, 0]


def test_recording_a_graph_into_postgres(postgres: Postgres, scripted_model: Any) -> None:
    """The recorder's write-behind writer works unchanged against the Postgres store."""
    from trajgraph.testing import react_calculator_agent

    store = postgres.store()
    agent = tg.record(react_calculator_agent(scripted_model), store=store, name="calc")
    agent.invoke({"messages": [("user", "what is 1+2 then *?")]})
    (run,) = store.runs(graph="calc")
    assert run.status == "succeeded" and len(store.steps(run.id)) == 5 and store.model_calls(run.id)


def _start_run_and_die(url: str, schema: str) -> None:
    PostgresStore(url, schema=schema).setup().write(runs=[Run(id="doomed", status="running")])
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_run_whose_process_was_killed_reads_interrupted(postgres: Postgres) -> None:
    """As on SQLite: a `running` run is stamped with its process; once that process is gone it reads, and on the
    next writable open is written, as interrupted."""
    store = postgres.store()
    child = multiprocessing.get_context("fork").Process(target=_start_run_and_die, args=(postgres.url, store.schema))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    run = store.run("doomed")
    assert run.status == "interrupted" and "ended without finishing" in (run.error or "")
    assert _sql(store, "SELECT status FROM runs WHERE id = 'doomed'") == [("running",)]  # a read changes nothing ...
    PostgresStore(postgres.url, schema=store.schema).setup()
    assert _sql(store, "SELECT status FROM runs WHERE id = 'doomed'") == [("interrupted",)]  # ... the next open writes it


def test_a_run_started_during_an_outage_past_the_deadline_is_reported_never_half_written(postgres: Postgres) -> None:
    """Issue 21.6: the server stays away longer than the write deadline. The run that started meanwhile is lost
    whole and said so (its flush raises), never half written; the run that was running stays running (its
    process lives) and is marked failed by its next update, not interrupted."""
    import threading
    import time

    from trajgraph.errors import StoreUnavailableError
    from trajgraph.store.writer import writer_for

    store = postgres.store(write_deadline_s=1.0)
    store.write(runs=[Run(id="before", status="running")], steps=[Step(run_id="before", seq=0, node="n")])
    writer = writer_for(store)
    down = threading.Event()
    away = threading.Thread(target=postgres.outage, args=(4.0, down))
    away.start()
    assert down.wait(120)  # the server is stopped (under load pg_ctl stop can take longer than a fixed sleep)
    writer.put("run", Run(id="during", status="running"))
    for seq in range(3):
        writer.put("step", Step(run_id="during", seq=seq, node="n"))
    writer.put("step", Step(run_id="before", seq=1, node="n"))
    started = time.monotonic()
    with pytest.raises(StoreError, match="unreachable") as info:
        writer.flush(run_id="during")
    assert time.monotonic() - started < 15  # bounded: the deadline, not forever
    assert "during" in str(info.value) and "\n" not in str(info.value)
    away.join()
    _until_reachable(store)  # the pool reconnects with a backoff of its own: the later rows come once it has
    writer.put("step", Step(run_id="during", seq=3, node="n"))  # its later rows cannot make it half a run
    writer.put("run_update", ("during", {"status": "succeeded"}))
    writer.put("run_update", ("before", {"status": "succeeded"}))
    writer.flush(raise_errors=False)
    with pytest.raises(StoreError, match="run before could not be stored"):  # told once, to whoever flushes next
        writer.raise_errors()
    assert [r.id for r in store.runs()] == ["before"] and store.count("steps") == 1
    before = store.run("before")
    assert before.status == "failed" and "could not be stored" in (before.error or ""), before  # a row of it was lost: said so
    assert store.mark_interrupted() == [] and isinstance(info.value.__cause__ or info.value, StoreError)
    assert issubclass(StoreUnavailableError, StoreError)


def _until_reachable(store: Any, patience_s: float = 60.0) -> None:
    """Wait until the store answers again after an outage (each try waits out its write deadline)."""
    import time

    end = time.monotonic() + patience_s
    while True:
        try:
            store.count("runs")
            return
        except StoreError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)
