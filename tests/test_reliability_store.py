"""One value cannot break a whole store (issue 11, item 6): user data shaped like the store's own
tags round-trips as data, and a row written by older code or something else never fails a listing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from typer.testing import CliRunner

import trajgraph as tg
from trajgraph.cli import app
from trajgraph.export import sft_dataset
from trajgraph.store import Store
from trajgraph.trajectory import Run, Step

LOOKALIKES = {
    "tool_json": {"x": {"__lc_message__": 1}},
    "send_like": {"__send__": {"node": "evil", "arg": {}}},
    "command_like": {"__command__": {"goto": "x"}},
    "repr_like": {"__repr__": "mine"},
    "escaped_like": {"~__send__": 2, "~~__lc_message__": 3},
}


class S(TypedDict, total=False):
    out: Any


def _graph() -> Any:
    g = StateGraph(S)
    g.add_node("tool", lambda s: {"out": LOOKALIKES})
    g.add_edge(START, "tool")
    g.add_edge("tool", END)
    return g.compile()


def test_user_data_shaped_like_tags_round_trips_as_data(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = Store(path)
    tg.record(_graph(), store=store, name="lookalike").invoke({"out": None})
    (run,) = store.runs()
    assert run.status == "succeeded" and run.output == {"out": LOOKALIKES}
    (step,) = store.steps(run.id)
    assert step.update == {"out": LOOKALIKES}  # before: a Send object came back, and the message tag broke reads
    assert type(step.update["out"]["send_like"]) is dict
    store.close()
    listing = CliRunner().invoke(app, ["runs", "--db", str(path)])
    assert listing.exit_code == 0 and "lookalike" in listing.stdout, listing.output
    assert sft_dataset(path, success_threshold=None) is not None


def test_a_tag_shaped_row_from_older_code_reads_as_data(tmp_path: Path) -> None:
    """Rows written before escaping (or by another tool) hold bare tags that cannot be revived."""
    path = tmp_path / "old.db"
    with Store(path) as s:
        s.write(runs=[Run(id="old", graph="g"), Run(id="fine", graph="g")])
        s.write(steps=[Step(run_id="old", seq=0, node="n"), Step(run_id="fine", seq=0, node="n", update={"a": 1})])
    conn = sqlite3.connect(path)
    bad = {"x": {"__lc_message__": 1}, "s": {"__send__": 5}, "c": {"__command__": {"bogus": 1}}, "f": {"__tg_float__": "zero"}}
    conn.execute("UPDATE runs SET output = ? WHERE id = 'old'", (json.dumps(bad),))
    conn.execute("""UPDATE steps SET "update" = ? WHERE run_id = 'old'""", (json.dumps(bad),))
    conn.commit()
    conn.close()
    store = Store(path)
    assert {r.id for r in store.runs()} == {"old", "fine"}
    assert store.run("old").output == bad and store.steps("old")[0].update == bad
    listing = CliRunner().invoke(app, ["runs", "--db", str(path)])
    assert listing.exit_code == 0 and "old" in listing.stdout, listing.output
