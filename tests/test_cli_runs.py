"""`trajgraph runs | show | replay | diff` through the real typer app, on real store files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import trajgraph as tg
from trajgraph.cli import app
from trajgraph.store import Store
from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph
from trajgraph.trajectory import SCHEMA_VERSION, Run, SearchNode


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TRAJGRAPH_DB", str(db_path))
    return CliRunner()


@pytest.fixture
def graph_file(tmp_path: Path) -> str:
    """A "file.py:attr" graph path: the 2-room chain the fixtures record."""
    path = tmp_path / "chain2.py"
    path.write_text("from trajgraph.testing.tiny_env import deceptive_chain_graph\ngraph = deceptive_chain_graph(depth=2, skill=1.0, trap=0.0)\n")
    return f"{path}:graph"


@pytest.fixture
def recorded(store: Store, graph_file: str) -> dict[str, str]:
    """A succeeded chain run (with its graph path), a failed one, and a search run with a tree."""
    ok = tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store, name="chain", graph_path=graph_file, tags=["good"])
    ok.invoke(chain_start("solve"))

    def env(state: dict) -> dict:
        raise RuntimeError("the environment fell over")

    from trajgraph.testing.tiny_env import env_loop_graph

    bad = tg.record(env_loop_graph(env, lambda s: {"action": "left"}).compile(), store=store, name="broken")
    with pytest.raises(RuntimeError):
        bad.invoke(chain_start("doomed"))
    store.write(
        runs=[Run(id="search0001", graph="chain", kind="search", status="succeeded")],
        search_nodes=[
            SearchNode(run_id="search0001", id=0, visits=4),
            SearchNode(run_id="search0001", id=1, parent_id=0, depth=1, action_text="left", score=0.9, value=0.8, visits=3, chosen=True),
            SearchNode(run_id="search0001", id=2, parent_id=0, depth=1, action_text="jump", score=0.4, visits=1, outcome=0.3, terminal=True),
            SearchNode(run_id="search0001", id=3, parent_id=1, depth=2, action_text="right", outcome=1.0, terminal=True, chosen=True),
        ],
    )
    return {"ok": store.runs(graph="chain", kind="record")[0].id, "bad": store.runs(graph="broken")[0].id, "search": "search0001"}


def _one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_runs_lists_and_filters(runner: CliRunner, recorded: dict[str, str]) -> None:
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 0, result.output
    for run_id in recorded.values():
        assert run_id in result.stdout
    only_failed = runner.invoke(app, ["runs", "--status", "failed"])
    assert recorded["bad"] in only_failed.stdout and recorded["ok"] not in only_failed.stdout
    assert "failed" in only_failed.stdout
    by_tag = runner.invoke(app, ["runs", "--tag", "good"]).stdout
    assert recorded["ok"] in by_tag and recorded["bad"] not in by_tag
    by_kind = runner.invoke(app, ["runs", "--kind", "search"]).stdout
    assert "search0001" in by_kind and recorded["ok"] not in by_kind
    by_graph = runner.invoke(app, ["runs", "--graph", "broken", "--since", "1h"]).stdout
    assert recorded["bad"] in by_graph and recorded["ok"] not in by_graph
    assert recorded["ok"] not in runner.invoke(app, ["runs", "--since", "2999-01-01"]).stdout
    assert len([line for line in runner.invoke(app, ["runs", "--limit", "1"]).stdout.splitlines() if "search0001" in line or recorded["ok"] in line or recorded["bad"] in line]) == 1


def test_show_prints_each_step(runner: CliRunner, recorded: dict[str, str]) -> None:
    result = runner.invoke(app, ["show", recorded["ok"][:24]])  # a unique prefix is enough
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert recorded["ok"] in out and "succeeded" in out
    assert out.count("policy") == 2 and out.count(" env ") >= 2
    broken = runner.invoke(app, ["show", recorded["bad"]]).stdout
    assert "RuntimeError: the environment fell over" in broken and "failed" in broken


def test_show_tree_draws_the_search_tree(runner: CliRunner, recorded: dict[str, str]) -> None:
    result = runner.invoke(app, ["show", "search0001", "--tree"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "search tree (4 nodes" in out
    assert "★ #1 left score=0.9 value=0.8 visits=3" in out and "★ #3 right outcome=1 visits=0" in out
    assert "#2 jump score=0.4 outcome=0.3 visits=1" in out and "★ #2" not in out
    assert out.index("#1 left") < out.index("#3 right") < out.index("#2 jump")  # children under their parent
    plain = runner.invoke(app, ["show", recorded["ok"], "--tree"]).stdout
    assert "no search tree recorded" in plain


def test_replay_fork_and_diff(runner: CliRunner, recorded: dict[str, str], store: Store, graph_file: str) -> None:
    _one_line_error(runner.invoke(app, ["replay", recorded["ok"]]), "Missing option '--graph'")  # never the store's graph_path
    assert not store.runs(kind="replay")
    result = runner.invoke(app, ["replay", recorded["ok"], "--graph", graph_file])
    assert result.exit_code == 0, result.output
    assert "matches the recording" in result.stdout
    (rep,) = store.runs(kind="replay")
    assert rep.parent_id == recorded["ok"]

    forked = runner.invoke(app, ["replay", recorded["ok"], "--fork-at", "2", "--graph", graph_file])
    assert forked.exit_code == 0, forked.output
    (fork,) = store.runs(kind="fork")
    assert fork.fork_step == 2 and fork.parent_id == recorded["ok"]

    same = runner.invoke(app, ["diff", recorded["ok"], rep.id])
    assert same.exit_code == 0 and "identical" in same.stdout and "4 same" in same.stdout


def test_replay_that_diverges_exits_1(runner: CliRunner, store: Store, tmp_path: Path) -> None:
    tg.record(deceptive_chain_graph(depth=2, skill=1.0, trap=0.0), store=store).invoke(chain_start())
    run_id = store.runs()[0].id
    other = tmp_path / "other_graph.py"  # same nodes, but the environment answers differently
    other.write_text(
        "from trajgraph.testing.tiny_env import env_loop_graph\n"
        "def env(state):\n"
        "    return {'observation': 'a different room', 'done': True, 'reward': 0.0}\n"
        "graph = env_loop_graph(env, lambda s: {'action': 'left'})\n"
    )
    result = runner.invoke(app, ["replay", run_id, "--graph", f"{other}:graph"])
    assert result.exit_code == 1, result.output
    assert "first divergence at step 1 (env): update differs" in result.stdout
    d = runner.invoke(app, ["diff", run_id, store.runs(kind="replay")[0].id])
    assert d.exit_code == 0 and "changed" in d.stdout and "a different room" in d.stdout


def test_errors_are_one_line_with_exit_code_2(runner: CliRunner, recorded: dict[str, str], tmp_path: Path, db_path: Path,
                                              graph_file: str) -> None:
    _one_line_error(runner.invoke(app, ["show", "nope"]), "no run 'nope'")
    _one_line_error(runner.invoke(app, ["show"]), "Missing argument")
    _one_line_error(runner.invoke(app, ["runs", "--since", "yesterday-ish"]), "since='yesterday-ish' is not a time")
    _one_line_error(runner.invoke(app, ["runs", "--limit", "zero"]), "--limit")
    _one_line_error(runner.invoke(app, ["replay", recorded["ok"], "--fork-at", "x", "--graph", graph_file]), "--fork-at")
    _one_line_error(runner.invoke(app, ["replay", recorded["ok"], "--fork-at", "40", "--graph", graph_file]), "cannot fork at step 40")
    _one_line_error(runner.invoke(app, ["replay", recorded["ok"], "--graph", "nomodule_zz:g"]), "cannot import")
    _one_line_error(runner.invoke(app, ["diff", recorded["ok"], "zzz"]), "no run 'zzz'")
    _one_line_error(runner.invoke(app, ["runs", "--db", str(tmp_path / "missing.db")]), "no such store file")
    assert not (tmp_path / "missing.db").exists()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not sqlite at all" * 100)
    _one_line_error(runner.invoke(app, ["runs", "--db", str(garbage)]), "not a trajgraph store")
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    before = foreign.read_bytes()
    _one_line_error(runner.invoke(app, ["show", "x", "--db", str(foreign)]), "not a trajgraph store")
    assert foreign.read_bytes() == before
    future = tmp_path / "future.db"
    Store(future).setup().close()
    conn = sqlite3.connect(future)
    conn.execute("UPDATE _trajgraph_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 5),))
    conn.commit()
    conn.close()
    _one_line_error(runner.invoke(app, ["replay", "x", "--db", str(future), "--graph", graph_file]), "newer than this trajgraph")


def test_show_and_replay_of_a_pickle_row_never_run_it(runner: CliRunner, pickled_store) -> None:
    path, run_id, marker = pickled_store
    for args in (["show", run_id], ["replay", run_id, "--graph", "trajgraph.testing.tiny_env:deceptive_chain_graph"], ["runs"],
                 ["diff", run_id, run_id]):
        result = runner.invoke(app, [*args, "--db", str(path)])
        assert result.exit_code in (0, 1, 2) and "Traceback" not in result.output, result.output
        if result.exit_code:  # a refusal is one line
            assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
    assert not marker.exists()
