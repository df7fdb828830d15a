"""The CLI's one error contract, choices, outputs, pipes and --json, across every command.

One line on stderr starting `error:`, exit 2 for bad input, 1 for a failure
while running, never a traceback or a box (typer's own usage errors included).
Most cases run through typer's CliRunner on the real app; the pipe and the
`python -m` entry point run as subprocesses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import trajgraph as tg
from trajgraph.cli import app
from trajgraph.cli._common import exit_code
from trajgraph.errors import ForkError, StoreError
from trajgraph.store import Store
from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph
from trajgraph.trajectory import PreferencePair, Run, SearchNode, Step


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Runs whose ids hold LIKE wildcards, an env run with a final reward, a search with a pair."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store, name="heldout-chain-with-a-long-name",
                  tags=["good"]).invoke(chain_start("solve"))
        store.write(runs=[
            Run(id="ab_1", graph="g", kind="record", status="succeeded", started_at=1.0, outcome=0.5),
            Run(id="abX2", graph="g", kind="record", status="failed", started_at=2.0, outcome=0.0),
            Run(id="s1", graph="g", kind="search", status="succeeded", started_at=3.0),
        ], steps=[Step(run_id="ab_1", seq=0, node="n")],
            search_nodes=[SearchNode(run_id="s1", id=0), SearchNode(run_id="s1", id=1, parent_id=0, action_text="left")],
            pairs=[PreferencePair(run_id="s1", source="mcts", prompt={"task": "t", "history": []},
                                  chosen={"action": {"action": "left"}, "text": "left"},
                                  rejected={"action": {"action": "jump"}, "text": "jump"})])
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_line(code: int, stderr: str, expect_code: int, *words: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == expect_code, (code, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and "╭" not in stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# -- bad input: exit 2, one line ------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["runs", "--status", "bogus"], ["status='bogus'", "succeeded"]),
    (["runs", "--kind", "bogus"], ["kind='bogus'", "rollout"]),
    (["runs", "--min-outcome", "x"], ["--min-outcome"]),
    (["runs", "--limit", "0"], ["--limit"]),
    (["runs", "--nope"], ["No such option", "--nope"]),
    (["show"], ["trajgraph show", "Missing argument"]),
    (["nosuchcommand"], ["No such command"]),
    (["export", "dpo", "out.jsonl", "--source", "bogus"], ["--source bogus", "mcts"]),
    (["export", "sft", "--status", "bogus", "x.jsonl"], ["status='bogus'"]),
    (["export", "sft"], ["no output file given"]),
    (["export", "sft", "a.jsonl", "--out", "b.jsonl"], ["two outputs given"]),
    (["export", "prm", "p.jsonl", "--label", "nope"], ["--label"]),
    (["bench", "--workers", "-3"], ["--workers"]),
    (["bench", "--skill", "7"], ["--skill"]),
    (["bench", "--tasks", "0"], ["--tasks"]),
    (["view", "--port", "70000"], ["--port"]),
    (["view", "--db", "postgresql://nobody@nowhere/db"], ["the viewer reads SQLite files", "store copy"]),
    (["reward", "train", "rm", "--epochs", "0"], ["epochs=0", "at least 1"]),
    (["reward", "train", "rm", "--val-fraction", "0.95"], ["val_fraction=0.95"]),
    (["replay", "ab_1"], ["Missing option '--graph'"]),
])
def test_bad_input_is_one_line_and_exit_2(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                          words: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # relative outputs land in the test's folder
    code, _, err = invoke(*args, *(["--db", str(db)] if args[0] not in ("nosuchcommand", "bench") and "--db" not in args else []))
    one_line(code, err, 2, *words)
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "rm").exists()  # refused before any work


def test_unwritable_outputs_are_refused_before_any_work(db: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args, needle in ((["export", "sft", str(blocker / "out.jsonl")], "is a file, not a folder"),
                         (["export", "spans", "--out", str(blocker / "s.jsonl")], "is a file, not a folder"),
                         (["reward", "train", str(blocker / "rm")], "is a file, not a folder"),
                         (["export", "dpo", str(tmp_path)], "is a folder; give a file path")):
        one_line(*invoke(*args, "--db", str(db))[::2], 2, needle)
    code, _, err = invoke("bench", "--out", str(blocker), "--tasks", "1")
    one_line(code, err, 2, "not a folder")


def test_a_port_in_use_is_one_line(db: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = invoke("view", "--db", str(db), "--port", str(taken.getsockname()[1]))
    one_line(code, err, 2, "cannot listen on 127.0.0.1", "pick another --port")


def test_run_id_prefixes_are_literal(db: Path) -> None:
    code, out, _ = invoke("show", "ab_", "--db", str(db), "--json")
    assert code == 0 and json.loads(out)["run"]["id"] == "ab_1"  # `_` is not a wildcard: abX2 does not match
    one_line(*invoke("show", "a%", "--db", str(db))[::2], 2, "no run 'a%'")
    one_line(*invoke("show", "ab", "--db", str(db))[::2], 2, "matches several runs")


# -- failures while running: exit 1 ----------------------------------------------------------


def test_failures_while_running_exit_1_and_bugs_stay_one_line(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert exit_code(ForkError("cannot fork")) == 1 and exit_code(StoreError("x")) == 2 and exit_code(OSError(28, "full")) == 1

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "out.jsonl"))

    monkeypatch.setattr("trajgraph.export.write_dataset", disk_full)
    one_line(*invoke("export", "sft", str(tmp_path / "out.jsonl"), "--db", str(db))[::2], 1, "out.jsonl: No space left on device")

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("trajgraph.cli.runs.select_runs", bug)
    one_line(*invoke("runs", "--db", str(db))[::2], 1, "unexpected RuntimeError: a bug", "TRAJGRAPH_DEBUG")


# -- listings: whole values to a pipe, --json ------------------------------------------------


def test_runs_to_a_pipe_prints_whole_values(db: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "trajgraph.cli", "runs", "--db", str(db)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split("\t")[:5] == ["id", "started", "graph", "kind", "status"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert set(rows) >= {"ab_1", "abX2", "s1"}
    named = [r for r in rows.values() if r[2] == "heldout-chain-with-a-long-name"]  # not squeezed to `heldout-…`
    assert len(named) == 1 and named[0][4] == "succeeded" and named[0][8] == "good"


def test_json_listings(db: Path) -> None:
    code, out, _ = invoke("runs", "--db", str(db), "--json", "--min-outcome", "0.5")
    assert code == 0
    runs = json.loads(out)
    ids = {r["id"] for r in runs}
    assert "ab_1" in ids and not ids & {"abX2", "s1"}  # 0.0 is below, no outcome never matches
    assert next(r for r in runs if r["id"] == "ab_1")["steps"] == 1
    code, out, _ = invoke("runs", "--db", str(db), "--json", "--kind", "search")
    assert [r["id"] for r in json.loads(out)] == ["s1"]
    code, out, _ = invoke("show", "s1", "--db", str(db), "--json", "--tree")
    data = json.loads(out)
    assert data["run"]["kind"] == "search" and [n["action_text"] for n in data["search_nodes"]] == ["", "left"]
    code, out, _ = invoke("diff", "ab_1", "abX2", "--db", str(db), "--json")
    data = json.loads(out)
    assert code == 0 and data["identical"] is False and data["counts"]["only_a"] == 1


def test_outcome_filter_applies_before_the_limit(db: Path) -> None:
    code, out, _ = invoke("runs", "--db", str(db), "--json", "--limit", "1", "--max-outcome", "0.2")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["abX2"]  # older than two non-matching runs


# -- the output form is the same everywhere: OUT or --out -------------------------------------


def test_output_as_argument_or_option(db: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert invoke("export", "dpo", str(a), "--db", str(db))[0] == 0
    assert invoke("export", "dpo", "--out", str(b), "--db", str(db))[0] == 0
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 1
    assert invoke("export", "spans", "-o", str(tmp_path / "s.jsonl"), "--db", str(db), "--run", "ab_1")[0] == 0
    assert (tmp_path / "s.jsonl").read_text().count("\n") == 2  # the run and its step


def test_python_m_entry_point_and_no_arguments_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "trajgraph.cli", "runs", "--status", "bogus", "--db", "/nonexistent.db"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    proc = subprocess.run([sys.executable, "-m", "trajgraph.cli", "export"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "sft" in proc.stdout + proc.stderr


def test_listing_filters_on_a_server_backend(postgres) -> None:
    """`runs` on Postgres: the same selection (outcome bounds before the limit) without SQLite's SQL."""
    from trajgraph.export.read import RunFilter, count_runs, select_runs

    store = postgres.store()
    store.write(runs=[Run(id=f"p{i}", graph="g", status="succeeded", started_at=float(i), outcome=1.0 if i < 2 else 0.0)
                      for i in range(6)])
    store.write(runs=[Run(id="env", graph="g", status="succeeded", started_at=0.5)],
                steps=[Step(run_id="env", seq=0, node="env", update={"done": True, "reward": 1.0})])
    winners = RunFilter.of(min_outcome=1)
    assert [r.id for r in select_runs(store, winners, limit=2)] == ["p1", "env"] and count_runs(store, winners) == 3
    assert [r.id for r in select_runs(store, RunFilter.of(graph="g"), limit=2)] == ["p5", "p4"]


def test_a_finished_command_leaves_no_wal_files_beside_the_store(tmp_path: Path) -> None:
    """Issue 17: every command checkpoints and closes the stores it opened (SQLite folds the WAL back
    into the file on the last close), so `demo.db-wal` / `demo.db-shm` are not left behind."""
    store = tmp_path / "b.db"
    proc = subprocess.run([sys.executable, "-m", "trajgraph.cli", "bench", "--suite", "chain", "--tasks", "1", "--train-tasks", "1",
                           "--budget", "6", "--optimizers", "greedy", "--db", str(store), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert store.exists() and sorted(p.name for p in tmp_path.glob("b.db*")) == ["b.db"]
    assert "search" in subprocess.run([sys.executable, "-m", "trajgraph.cli", "runs", "--db", str(store)],
                                      capture_output=True, text=True, timeout=120).stdout
