"""trajgraph/store/: conformance suite, file safety, migrations, processes, crashes, no pickle."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import cast

import pytest

from trajgraph.errors import NotAStoreError, RunNotFoundError, SchemaTooNewError, StoreError
from trajgraph.store import Store
from trajgraph.store.dialect import SQLITE
from trajgraph.store.schema import MIGRATIONS as _MIGRATIONS
from trajgraph.testing.store_suite import CHECKS, check_outage
from trajgraph.trajectory import SCHEMA_VERSION, Run, Step


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_conformance(check, tmp_path: Path) -> None:
    counter = itertools.count()
    check(lambda: Store(tmp_path / f"{next(counter)}.db").setup())


def test_store_outage_sqlite(tmp_path: Path) -> None:
    """SQLite's outage: another process holds the file locked for a while; writes wait their turn and land whole."""
    path = tmp_path / "o.db"

    def outage(seconds: float) -> None:
        other = sqlite3.connect(path, timeout=30)
        other.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    check_outage(lambda: Store(path).setup(), outage)


def test_new_store_is_wal_with_schema_version(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM _trajgraph_meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"runs_graph_started", "runs_status", "runs_started", "run_tags_tag"} <= indexes
    views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='view'")}
    assert {"decision_steps", "dpo_pairs"} <= views


def _snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def _assert_one_line_refusal(path: Path, error: type[Exception], words: str) -> None:
    before = _snapshot(path)
    with pytest.raises(error) as info:
        Store(path).setup()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and words in message, message
    assert _snapshot(path) == before  # bytes, mtime, and no -wal/-shm left beside it


def test_sqlite_file_that_is_not_a_store_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'ada')")
    conn.commit()
    conn.close()
    _assert_one_line_refusal(path, NotAStoreError, "not a trajgraph store")


def test_garbage_file_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(8192))
    _assert_one_line_refusal(path, NotAStoreError, "not an SQLite database")


def test_truncated_store_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "trunc.db"
    with Store(path) as s:
        s.write(runs=[Run(id=f"r{i}", metadata={"pad": "x" * 2000}) for i in range(200)])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")  # fold the WAL in: the main file holds everything
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_one_line_refusal(path, NotAStoreError, "corrupt")


def test_newer_schema_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store(path).setup().close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE _trajgraph_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    _assert_one_line_refusal(path, SchemaTooNewError, "newer than this trajgraph")


def test_directory_and_missing_readonly_file(tmp_path: Path) -> None:
    with pytest.raises(NotAStoreError, match="is a directory"):
        Store(tmp_path).setup()
    missing = tmp_path / "nope.db"
    with pytest.raises(StoreError, match="no such store file"):
        Store(missing, readonly=True).setup()
    assert not missing.exists()
    with pytest.raises(StoreError, match=r"the folder .*/no/such does not exist; create it first"):
        Store(tmp_path / "no" / "such" / "runs.db").setup()
    assert not (tmp_path / "no").exists()


def test_readonly_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with Store(path) as s:
        s.write(runs=[Run(id="r1", graph="g")])
    ro = Store(path, readonly=True).setup()
    assert ro.run("r1").graph == "g"
    with pytest.raises(StoreError, match="read-only"):
        ro.write(runs=[Run(id="r2")])


def test_v1_store_migrates_to_current_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in SQLITE.render(cast(str, _MIGRATIONS[1][0])):
        conn.execute(statement)
    conn.execute("CREATE TABLE _trajgraph_meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO _trajgraph_meta VALUES ('schema_version', '1'), ('app', 'trajgraph')")
    conn.execute("INSERT INTO runs (id, graph, started_at) VALUES ('old', 'g', 1.0)")
    conn.execute("""INSERT INTO steps (run_id, seq, node, "update") VALUES ('old', 0, 'agent', '{"x": 1}')""")
    conn.commit()
    conn.close()
    store = Store(path).setup()
    (step,) = store.steps("old")
    assert step.update == {"x": 1} and step.task_id == ""
    store.write(steps=[Step(run_id="old", seq=1, node="tools", task_id="abc")])
    assert store.steps("old")[1].task_id == "abc"
    version = sqlite3.connect(path).execute("SELECT value FROM _trajgraph_meta WHERE key='schema_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION)



def test_a_recorded_row_touches_no_index_it_does_not_need_and_lookups_still_use_one(tmp_path: Path) -> None:
    """Schema v6: a run's parent, thread and task are indexed only where set (a recorded run without them writes
    no entry there), steps carry only their key; `runs(parent_id=/thread_id=/task=)` still read through an index."""
    path = tmp_path / "s.db"
    store = Store(path).setup()
    store.write(runs=[Run(id="a", graph="g"), Run(id="b", graph="g", parent_id="a", thread_id="t", task="k")],
                steps=[Step(run_id="a", seq=0, node="agent")])
    conn = sqlite3.connect(path)
    run_indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'"))
    for column, index in (("parent_id", "runs_parent_set"), ("thread_id", "runs_thread_set"), ("task", "runs_task_set")):
        assert run_indexes[index].endswith(f"WHERE {column} IS NOT NULL"), run_indexes[index]  # run a: no entry
        assert not any(sql and f"({column})" in sql for name, sql in run_indexes.items() if name != index)
    step_indexes = {r[1] for r in conn.execute("PRAGMA index_list(steps)")}
    assert step_indexes == {"sqlite_autoindex_steps_1"}  # the (run_id, seq) key
    for column, index in (("parent_id", "runs_parent_set"), ("thread_id", "runs_thread_set"), ("task", "runs_task_set")):
        plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM runs WHERE {column} = ?", ["x"]))
        assert index in plan, plan
    assert [r.id for r in store.runs(parent_id="a")] == ["b"] and [r.id for r in store.runs(thread_id="t")] == ["b"]
    assert [r.id for r in store.runs(task="k")] == ["b"]
    conn.close()

def test_pickle_payload_in_a_row_is_never_executed(pickled_store, tmp_path: Path) -> None:
    path, run_id, marker = pickled_store
    store = Store(path).setup()
    # read, marked unreadable, never unpickled: one damaged row does not fail the whole listing
    store.write(runs=[Run(id="healthy", graph="g", output={"ok": 1})])
    assert {r.id for r in store.runs()} == {run_id, "healthy"} and store.run("healthy").output == {"ok": 1}
    for value in (store.run(run_id).output, store.steps(run_id)[0].update, store.steps(run_id)[0].action,
                  store.trajectory(run_id).run.output):
        assert "never unpickled" in value["__tg_unreadable__"] or "never evaluated" in value["__tg_unreadable__"], value
    from trajgraph.replay import replay
    from trajgraph.testing import deceptive_chain_graph

    with pytest.raises(StoreError):
        replay(store, run_id, deceptive_chain_graph())
    assert not marker.exists()
    (blob,) = sqlite3.connect(path).execute("SELECT output FROM runs WHERE id = ?", (run_id,)).fetchone()
    pickle.loads(blob)  # the control: the payload is live, had anything unpickled it
    assert marker.exists()


def test_run_lookup_errors_are_one_line(store: Store) -> None:
    with pytest.raises(RunNotFoundError) as info:
        store.run("missing")
    assert "\n" not in str(info.value) and "trajgraph runs" in str(info.value)
    with pytest.raises(StoreError, match="unknown table"):
        store.count("sqlite_master")


def test_a_decision_steps_action_reads_back_as_its_update(store: Store) -> None:
    """Recorded, a decision step's action is its update (one object, stored once per column); read back it is
    one object again, so reading decodes it once and writing the step to another store encodes it once."""
    update = {"messages": [{"role": "ai", "content": "go north"}]}
    store.write(runs=[Run(id="r", graph="g")])
    store.write(steps=[Step(run_id="r", seq=0, node="agent", update=update, action=update),
                       Step(run_id="r", seq=1, node="agent", update=update, action={"move": "north"}),
                       Step(run_id="r", seq=2, node="tools", update=update)])
    decided, other, plain = store.steps("r")
    assert decided.action == update and decided.action is decided.update
    assert other.action == {"move": "north"} and other.update == update
    assert plain.action is None and plain.update == update


# -- several processes ------------------------------------------------------------


def record_worker(path: str, worker: int, runs: int, start: object) -> None:
    """Spawned: record `runs` runs of an 8-step env loop into the shared file."""
    import trajgraph as tg
    from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph

    start.wait(60)  # type: ignore[attr-defined]  # all four open the new file at once, then write at once
    graph = tg.record(deceptive_chain_graph(depth=4, skill=1.0, trap=0.0, seed=worker), store=tg.Store(path), name=f"w{worker}")
    start.wait(60)  # type: ignore[attr-defined]
    for _ in range(runs):
        graph.invoke(chain_start(f"w{worker}"))


def setup_worker(paths: list[str], start: object) -> None:
    """Spawned: open each new store file at the same moment as the other workers."""
    from trajgraph.store import Store

    for path in paths:
        start.wait(60)  # type: ignore[attr-defined]
        Store(path).setup().close()


def run_workers(target, arg_sets: list[tuple]) -> None:
    """Start one spawned process per argument tuple; never leave one behind, even when a test fails."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(arg_sets))
    procs = [ctx.Process(target=target, args=(*args, start), daemon=True) for args in arg_sets]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(180)
        assert [p.exitcode for p in procs] == [0] * len(procs)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)


@pytest.mark.slow
def test_many_processes_creating_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"new{i}.db") for i in range(15)]
    run_workers(setup_worker, [(paths,)] * 6)
    for path in paths:
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert Store(path).setup().count("runs") == 0
        conn.close()


@pytest.mark.slow
def test_four_processes_record_into_one_file_and_lose_nothing(db_path: Path) -> None:
    runs = 25
    run_workers(record_worker, [(str(db_path), w, runs) for w in range(4)])
    store = Store(db_path).setup()
    all_runs = store.runs()
    assert len(all_runs) == 4 * runs and {r.status for r in all_runs} == {"succeeded"}
    assert {r.graph for r in all_runs} == {"w0", "w1", "w2", "w3"}
    for r in all_runs:  # skill=1.0, depth 4: policy/env four times each, every seq present once
        steps = store.steps(r.id)
        assert [s.seq for s in steps] == list(range(8)) and [s.node for s in steps] == ["policy", "env"] * 4
        assert r.output["reward"] == 1.0
    assert store.count("steps") == 4 * runs * 8
    spans = [(min(r.started_at for r in all_runs if r.graph == g), max(cast(float, r.ended_at) for r in all_runs if r.graph == g)) for g in ("w0", "w1", "w2", "w3")]
    assert max(a for a, _ in spans) < min(b for _, b in spans)  # the four really wrote at the same time


_SLOW_RECORDER = textwrap.dedent(
    """
    import sys, time
    import trajgraph as tg
    from typing import TypedDict
    from langgraph.graph import StateGraph, START, END

    class S(TypedDict):
        i: int

    def tick(state):
        time.sleep(0.004)
        return {"i": state["i"] + 1}

    g = StateGraph(S)
    g.add_node("tick", tick)
    g.add_edge(START, "tick")
    g.add_conditional_edges("tick", lambda s: END if s["i"] >= 100000 else "tick", ["tick", END])
    graph = tg.record(g.compile(), store=tg.Store(sys.argv[1]), name="slow")
    graph.invoke({"i": 0}, {"recursion_limit": 10**6})
    """
)


@pytest.mark.slow
def test_sigkill_mid_run_keeps_every_committed_step(db_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_RECORDER)
    proc = subprocess.Popen([sys.executable, str(script), str(db_path)])
    try:
        seen, deadline = 0, time.time() + 60
        while seen < 150 and time.time() < deadline:  # let it commit a few batches
            time.sleep(0.2)
            if db_path.exists():
                try:
                    seen = Store(db_path, readonly=True).setup().count("steps")
                except StoreError:
                    seen = 0  # schema not created yet
        assert seen >= 150, "the recorder never committed steps"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    (seen_ro,) = Store(db_path, readonly=True).runs()  # read-only: reported interrupted, not written
    assert seen_ro.status == "interrupted" and f"pid {proc.pid}" in (seen_ro.error or "")
    raw = sqlite3.connect(db_path).execute("SELECT status FROM runs").fetchone()[0]
    assert raw == "running"
    store = Store(db_path).setup()  # opens (integrity check passes), stays writable, and writes down the death
    (run,) = store.runs()
    assert run.status == "interrupted" and "ended without finishing" in (run.error or "")  # was 'running' forever
    assert sqlite3.connect(db_path).execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    steps = store.steps(run.id)
    assert len(steps) >= seen
    assert [s.seq for s in steps] == list(range(len(steps)))  # no hole: batches commit whole
    assert [s.update["i"] for s in steps] == list(range(1, len(steps) + 1))
    store.write(runs=[Run(id="after")])
    assert store.run("after").id == "after"


def test_commits_leave_checkpoints_to_a_thread_of_their_own(tmp_path: Path) -> None:
    from trajgraph.store import sqlite as sqlite_store

    store = Store(tmp_path / "ck.db")
    conn = store.db.conn
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # no commit copies the WAL back itself
    before = (tmp_path / "ck.db").stat().st_size
    runs = [Run(id=f"ck{i:04d}", graph="g") for i in range(40)]
    store.write(runs=runs)
    for run in runs:  # 40 x 30 rows: past the checkpoint's row count
        store.write(steps=[Step(run_id=run.id, seq=k, node="n", update={"text": "x" * 200}) for k in range(30)])
    store._checkpoints.join()  # type: ignore[attr-defined]
    assert 40 * 30 >= sqlite_store._CHECKPOINT_ROWS
    # the store is still open, and its pages are in the file: a checkpoint ran beside the commits
    assert (tmp_path / "ck.db").stat().st_size > before + 40 * 30 * 200
    assert len(store.steps("ck0039")) == 30
    store.close()  # its full-text index catches up (a write of its own) and any checkpoint that started ends first
    thread = store._checkpoints._thread  # type: ignore[attr-defined]
    assert thread is not None and not thread.is_alive()


def test_a_checkpoint_never_creates_a_store_that_was_moved_away(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from trajgraph.store.sqlite import Checkpoints

    gone = tmp_path / "moved.db"
    Checkpoints(gone)._run()  # what the thread runs, here, after the file went away
    assert not gone.exists()
    assert "checkpoint skipped" in caplog.text


def test_a_checkpoint_thread_that_cannot_start_costs_no_row_and_no_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from trajgraph.store import sqlite as sqlite_store

    store = Store(tmp_path / "nt.db")
    monkeypatch.setattr(sqlite_store, "_CHECKPOINT_ROWS", 1)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    store.write(runs=[Run(id="nt1", graph="g")])  # committed; the checkpoint that could not start is not an error
    monkeypatch.undo()
    store.close()  # nothing to join
    assert [r.id for r in Store(tmp_path / "nt.db").runs()] == ["nt1"]
