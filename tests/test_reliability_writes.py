"""Nothing lost (issue 11, item 1): a value or row that cannot be stored never takes other rows
with it, never passes in silence, and never hides SQLite's real cause."""

from __future__ import annotations

import math
import operator
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

import trajgraph as tg
from trajgraph.errors import StoreError
from trajgraph.store import Store
from trajgraph.store.writer import Later, writer_for
from trajgraph.trajectory import Run, Step


class S(TypedDict, total=False):
    log: Annotated[list[Any], operator.add]
    value: Any


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _self_ref() -> dict[str, Any]:
    d: dict[str, Any] = {"name": "loop"}
    d["self"] = d
    return d


def _deep(n: int) -> list[Any]:
    top: list[Any] = []
    cur = top
    for _ in range(n):
        cur.append([])
        cur = cur[0]
    return top


def chain(first: Any, n: int = 4) -> Any:
    """A graph whose first node returns `first` and the next n-1 nodes return healthy values."""
    g = StateGraph(S)
    g.add_node("n0", lambda s: {"value": first, "log": ["n0"]})
    prev = "n0"
    g.add_edge(START, "n0")
    for i in range(1, n):
        g.add_node(f"n{i}", lambda s, i=i: {"value": i, "log": [f"n{i}"]})
        g.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    g.add_edge(prev, END)
    return g.compile()


HOSTILE = {
    "lone_surrogate": "caf\udce9.txt",
    "nesting_600": _deep(600),
    "self_reference": _self_ref(),
    "repr_raises": Hostile(),
    "nan_inf": [math.nan, math.inf, -math.inf],
    "bytes": b"\x00\xff" * 10,
    "int_and_str_keys": {1: "int", "1": "str"},
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_value_at_step_0_loses_nothing(store: Store, name: str) -> None:
    value = HOSTILE[name]
    out = tg.record(chain(value), store=store).invoke({"log": []})
    assert out["log"] == ["n0", "n1", "n2", "n3"]
    (run,) = store.runs()
    assert run.status == "succeeded", run.error
    steps = store.steps(run.id)
    assert [s.node for s in steps] == ["n0", "n1", "n2", "n3"]  # before: the whole run was lost
    stored = steps[0].update["value"]
    if name in ("lone_surrogate", "bytes", "int_and_str_keys"):
        assert stored == value  # kept exactly
    elif name == "nan_inf":
        assert math.isnan(stored[0]) and stored[1:] == [math.inf, -math.inf]
    elif name == "repr_raises":
        assert "repr raised RuntimeError" in stored["__repr__"]  # marked
    else:  # marked, with the whole value as JSON text beside the reason
        marked = stored["__tg_unstored__"]
        assert marked["reason"] and marked["type"] in ("builtins.list", "builtins.dict")
        if name == "self_reference":
            assert "cycle" in marked["reason"] and '"name":"loop"' in marked["json"] and "__tg_cycle__" in marked["json"]
        else:
            assert marked["json"] == "[" * 601 + "]" * 601


def test_one_unwritable_row_does_not_take_the_batch_with_it(store: Store) -> None:
    """A row SQLite refuses (here a step of a run that is not in the store) is the only row lost;
    the error names its run and reaches the flush; Store.write itself raises StoreError."""
    writer = writer_for(store)
    writer.put("run", Run(id="good", graph="g"))
    for seq in range(5):
        writer.put("step", Step(run_id="good", seq=seq, node="n", update={"seq": seq}))
    writer.put("step", Step(run_id="ghost", seq=0, node="n"))
    writer.put("run", Run(id="also-good", graph="g"))
    with pytest.raises(StoreError, match="ghost") as info:
        store.flush()
    assert "\n" not in str(info.value) and "FOREIGN KEY" in str(info.value)
    assert [s.seq for s in store.steps("good")] == [0, 1, 2, 3, 4]
    assert {r.id for r in store.runs()} == {"good", "also-good"}
    store.flush()  # reported once
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        store.write(steps=[Step(run_id="ghost", seq=0, node="n")])


def test_a_row_the_writer_cannot_build_is_the_only_row_lost_and_its_run_is_told(store: Store) -> None:
    """A `Later` row (built on the writer's thread) whose building raises: that row alone is lost, the rest of
    the batch lands, the run is marked failed with the cause, and its flush raises it."""
    writer = writer_for(store)
    writer.put("run", Run(id="r", graph="g"))
    writer.put("step", Later("r", lambda: Step(run_id="r", seq=0, node="built")))

    def broken() -> Step:
        raise ValueError("no such step")

    writer.put("step", Later("r", broken))
    writer.put("step", Step(run_id="r", seq=2, node="after"))
    with pytest.raises(StoreError, match="run r") as info:
        writer.flush(run_id="r")
    assert "could not be built" in str(info.value) and "no such step" in str(info.value)
    assert [(s.seq, s.node) for s in store.steps("r")] == [(0, "built"), (2, "after")]
    assert store.run("r").status == "failed" and "no such step" in (store.run("r").error or "")


def test_recorded_steps_are_built_on_the_writers_thread(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node wrapper hands a step over unbuilt (`Later`): building it between two of LangGraph's node calls,
    on cold caches, cost the graph's thread more than the writer's whole batch does (benchmarks/README.md)."""
    import threading

    from trajgraph.recording import instrument

    built_on: list[str] = []
    step_of = instrument.step_of

    def spy(*args: Any, **kwargs: Any) -> Step:
        built_on.append(threading.current_thread().name)
        return step_of(*args, **kwargs)

    monkeypatch.setattr(instrument, "step_of", spy)
    graph = tg.record(chain("first", 2), store=store)
    graph.invoke({"log": []})
    (run,) = store.runs()
    assert [s.node for s in store.steps(run.id)] == ["n0", "n1"]
    assert len(built_on) == 2 and all(name.startswith("trajgraph-writer") for name in built_on), built_on


def test_full_disk_fails_the_run_with_the_real_cause_and_keeps_the_rest(tmp_path: Path) -> None:
    """SQLITE_FULL (max_page_count caps the file as a full disk would): the big step is lost, the
    others land, the run ends failed with the cause, invoke raises it (not "cannot rollback")."""
    store = Store(tmp_path / "full.db").setup()
    pages = store.db.conn.execute("PRAGMA page_count").fetchone()[0]
    store.db.conn.execute(f"PRAGMA max_page_count = {pages + 40}")  # ~160 KB more
    with pytest.raises(StoreError, match="database or disk is full") as info:
        tg.record(chain("x" * 1_000_000), store=store).invoke({"log": []})
    message = str(info.value)
    assert "cannot rollback" not in message and "\n" not in message and "free space" in message
    (run,) = store.runs()
    assert run.status == "failed" and "database or disk is full" in (run.error or "")
    assert [s.node for s in store.steps(run.id)] == ["n1", "n2", "n3"]
    with pytest.raises(StoreError, match="database or disk is full") as direct:
        store.write(steps=[Step(run_id=run.id, seq=9, node="big", update="y" * 1_000_000)])
    assert "cannot rollback" not in str(direct.value)


def test_read_only_store_raises_at_the_end_of_invoke(tmp_path: Path) -> None:
    store = Store(tmp_path / "ro.db").setup()
    store.db.conn.execute("PRAGMA query_only = ON")  # what a read-only file gives: SQLITE_READONLY on write
    with pytest.raises(StoreError, match="readonly|read-only"):
        tg.record(chain(1), store=store).invoke({"log": []})


def test_a_failing_store_makes_the_process_fail_not_exit_0(tmp_path: Path) -> None:
    script = tmp_path / "rec.py"
    here = str(Path(__file__).parent)
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {here!r})\n"
        "from test_reliability_writes import chain\n"
        "import trajgraph as tg\n"
        "store = tg.Store(sys.argv[1]).setup()\n"
        "store.db.conn.execute('PRAGMA query_only = ON')\n"
        "tg.record(chain(1), store=store).invoke({'log': []})\n"
    )
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "x.db")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "StoreError" in proc.stderr and "readonly" in proc.stderr


def test_wal_store_in_a_read_only_folder_is_a_permissions_problem(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with Store(folder / "runs.db") as s:
        s.write(runs=[Run(id="r1", graph="g")])
    if os.geteuid() == 0:  # root ignores mode bits: make the folder a read-only mount
        if subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True).returncode:
            pytest.skip("root without mount: cannot make a read-only folder here")
        undo = ["umount", str(folder)]
    else:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        with pytest.raises(StoreError) as info:
            Store(folder / "runs.db").setup()
        message = str(info.value)
        assert "not writable" in message and "permissions" in message and "corrupt" not in message and "restore" not in message
        reader = Store(folder / "runs.db", readonly=True)
        assert reader.run("r1").graph == "g"  # and it can still be read
        reader.close()
    finally:
        subprocess.run(undo, check=True)
    assert sqlite3.connect(folder / "runs.db").execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_a_run_that_lost_rows_stays_failed_whatever_its_later_updates_say(store: Store) -> None:
    writer = writer_for(store)
    writer.put("run", Run(id="r", graph="g"))
    writer.put("step", Step(run_id="r", seq=0, node="ok"))
    writer.put("step", Step(run_id="r", seq=1, node=None))  # type: ignore[arg-type]  # NOT NULL: SQLite refuses it
    with pytest.raises(StoreError, match="run r"):
        writer.flush(run_id="r")
    assert store.run("r").status == "failed" and "NOT NULL" in (store.run("r").error or "")
    writer.put("run_update", ("r", {"status": "succeeded", "ended_at": 2.0}))  # the run's own end, in a later batch
    writer.put("run", Run(id="r", graph="g", status="succeeded"))  # or the whole run written again
    writer.flush(run_id="r")
    run = store.run("r")
    assert run.status == "failed" and "could not be stored" in (run.error or "") and "NOT NULL" in (run.error or "")
    assert [s.seq for s in store.steps("r")] == [0]
    writer.put("run_update", ("r", {"metadata": {"note": "kept"}}))  # an update that says nothing of status passes as it is
    writer.flush()
    assert store.run("r").metadata == {"note": "kept"} and store.run("r").status == "failed"


def test_a_store_locked_by_another_process_reports_every_run_of_the_batch(store: Store) -> None:
    other = sqlite3.connect(store.path)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file
    store.db.conn.execute("PRAGMA busy_timeout = 50")
    writer = writer_for(store)
    try:
        writer.put("run", Run(id="a", graph="g"))
        writer.put("run", Run(id="b", graph="g"))
        with pytest.raises(StoreError, match="locked") as info:
            store.flush()  # any run's loss, told once: the first, and how many others
        assert "run a" in str(info.value) and "and 1 other run(s) lost rows" in str(info.value) and "\n" not in str(info.value)
        writer.flush(run_id="b")  # already told
    finally:
        other.rollback()
        other.close()
