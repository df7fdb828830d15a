"""`trajgraph store copy | prune` and `--db postgresql://…` through the real typer app, on real SQLite files
and the session's throwaway PostgreSQL (trajgraph/cli/stores.py, trajgraph/store/transfer.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from typer.testing import CliRunner

from tests._services import Postgres
from trajgraph.cli import app
from trajgraph.store import Store
from trajgraph.store.rows import JSON_FIELDS
from trajgraph.trajectory import SCHEMA_VERSION, ModelCall, PreferencePair, Run, SearchNode, Step


@pytest.fixture(autouse=True)
def _close_stores(postgres: Postgres) -> Any:
    yield
    postgres.close_stores()


def _fill(store: Any, now: float) -> None:
    """Two families (a search with two rollouts and pairs; a recording with a fork) and a lone old run."""
    m = [HumanMessage(content="q"), AIMessage(content="a"), HumanMessage(content="more")]
    store.write(
        runs=[Run(id="search", kind="search", tags=("paper",), started_at=now - 100, ended_at=now - 90, status="succeeded"),
              Run(id="roll1", kind="rollout", parent_id="search", started_at=now - 99, outcome=1.0),
              Run(id="roll2", kind="rollout", parent_id="search", started_at=now - 98, outcome=0.0),
              Run(id="rec", kind="record", started_at=now - 50, input={"messages": m[:1]}),
              Run(id="fork", kind="fork", parent_id="rec", fork_step=1, started_at=now - 40),
              Run(id="old", started_at=now - 40 * 86400)],
        steps=[Step(run_id=r, seq=i, node="policy", update={"action": f"a{i}"}, action={"action": f"a{i}"})
               for r in ("roll1", "roll2", "rec", "fork") for i in range(3)],
        model_calls=[ModelCall(run_id="rec", seq=0, messages=m[:1], response=m[1]),
                     ModelCall(run_id="rec", seq=1, messages=m, prompt_ref=0, prompt_shared=1, token_ids=[1, 2], logprobs=[-0.1, None])],
        search_nodes=[SearchNode(run_id="search", id=i, parent_id=None if i == 0 else 0, action={"action": f"a{i}"}, score=i / 2, created_at=now)
                      for i in range(3)],
        pairs=[PreferencePair(run_id="search", source="rro", prompt={"task": "t", "history": []}, chosen={"text": "a1"},
                              rejected={"text": "a2"}, chosen_score=0.5, rejected_score=0.0, node_id=0, chosen_node=1, rejected_node=2)],
    )


def _cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    return result.stdout if code == 0 else result.stderr


def _dump(store: Any) -> dict[str, Any]:
    """Every row of every table as read back through the store (what a user sees)."""
    runs = store.runs(newest_first=False)
    return {"runs": [r.to_dict() for r in runs],
            "steps": [s.to_dict() for r in runs for s in store.steps(r.id)],
            "model_calls": [c.to_dict() for r in runs for c in store.model_calls(r.id)],
            "search_nodes": [n.to_dict() for r in runs for n in store.search_nodes(r.id)],
            "pairs": [p.to_dict() for p in store.pairs()]}


def _counts(store: Any) -> list[int]:
    return [store.count(t) for t in ("runs", "steps", "model_calls", "search_nodes", "pairs")]


def test_copy_sqlite_to_postgres_and_back_is_exact_and_idempotent(tmp_path: Path, postgres: Postgres) -> None:
    now = time.time()
    a = Store(tmp_path / "a.db").setup()
    _fill(a, now)
    pg = postgres.store()
    url = f"{postgres.url}&options=-csearch_path%3D{pg.schema}"
    counts = json.loads(_cli("store", "copy", str(a.path), url, "--json"))
    assert counts == {"families": 3, "runs": 6, "steps": 12, "model_calls": 2, "search_nodes": 3, "pairs": 1, "skipped": 0, "replaced": 0}
    assert _dump(pg) == _dump(a) and _counts(pg) == _counts(a) == [6, 12, 2, 3, 1]

    again = json.loads(_cli("store", "copy", str(a.path), url, "--json"))  # nothing new: nothing doubled
    assert (again["runs"], again["skipped"]) == (0, 3) and _counts(pg) == [6, 12, 2, 3, 1]

    a.update_run("search", status="failed", tags=("paper", "redo"))  # the source changed since: that family is replaced
    a.close()
    again = json.loads(_cli("store", "copy", str(a.path), url, "--json"))
    assert (again["runs"], again["replaced"], again["skipped"]) == (3, 1, 2) and _counts(pg) == [6, 12, 2, 3, 1]
    assert pg.run("search").status == "failed" and [r.id for r in pg.runs(tag="redo")] == ["search"]

    back = tmp_path / "back.db"
    _cli("store", "copy", url, str(back))
    b = Store(back).setup()
    assert _dump(b) == _dump(Store(tmp_path / "a.db").setup())
    raw_a, raw_b = sqlite3.connect(tmp_path / "a.db"), sqlite3.connect(back)
    for table, cols in JSON_FIELDS.items():  # the stored JSON text itself, byte for byte, after SQLite -> Postgres -> SQLite
        key = {"runs": "id", "steps": "run_id, seq", "model_calls": "run_id, seq", "search_nodes": "run_id, id", "pairs": "run_id, node_id"}[table]
        select = f"SELECT {key}, {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {table} ORDER BY {key}"
        assert raw_a.execute(select).fetchall() == raw_b.execute(select).fetchall(), table
    assert _counts(b) == [6, 12, 2, 3, 1]
    _cli("store", "copy", url, str(back))  # and back again: still nothing doubled (SQLite's side of idempotence)
    assert _counts(Store(back).setup()) == [6, 12, 2, 3, 1]


def test_copy_with_a_filter_brings_whole_families(tmp_path: Path) -> None:
    a = Store(tmp_path / "a.db").setup()
    _fill(a, time.time())
    a.close()
    out = _cli("store", "copy", str(tmp_path / "a.db"), str(tmp_path / "b.db"), "--kind", "rollout", "--json")
    assert json.loads(out)["runs"] == 3  # the rollouts came with their search (a rollout needs its parent)
    b = Store(tmp_path / "b.db").setup()
    assert sorted(r.id for r in b.runs()) == ["roll1", "roll2", "search"] and b.count("pairs") == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_prune_keeps_recent_families_whole(backend: str, tmp_path: Path, postgres: Postgres) -> None:
    now = time.time()
    if backend == "sqlite":
        store, db = Store(tmp_path / "p.db").setup(), str(tmp_path / "p.db")
    else:
        store = postgres.store()
        db = f"{postgres.url}&options=-csearch_path%3D{store.schema}"
    _fill(store, now)
    store.close()
    plan = json.loads(_cli("store", "prune", "--db", db, "--older-than", "30d", "--dry-run", "--json"))
    assert plan["run_ids"] == ["old"] and plan["deleted_runs"] == 0 and _counts(store) == [6, 12, 2, 3, 1]
    plan = json.loads(_cli("store", "prune", "--db", db, "--keep-last", "1", "--json"))
    assert sorted(plan["run_ids"]) == ["old", "roll1", "roll2", "search"] and plan["deleted_runs"] == 4
    assert sorted(r.id for r in store.runs()) == ["fork", "rec"]  # the newest family, fork and all
    assert _counts(store) == [2, 6, 2, 0, 0]  # steps, nodes and pairs of the pruned runs went with them
    assert "say what to prune" in _cli("store", "prune", "--db", db, code=2)
    assert "--older-than" in _cli("store", "prune", "--db", db, "--older-than", "soon", code=2)


def test_bad_store_urls_are_one_line_exit_2(tmp_path: Path, postgres: Postgres) -> None:
    for url, words in (("postgresql://u@h:port/db", "malformed PostgreSQL URL"),
                       (f"postgresql://u@/db?host={tmp_path}", "cannot connect"),
                       ("mysql://h/db", "unknown store URL scheme")):
        err = _cli("runs", "--db", url, code=2)
        assert words in err and err.count("\n") == 1, err
    store = postgres.store()
    store.close()
    import psycopg

    with psycopg.connect(store._conninfo, autocommit=True) as conn:
        conn.execute("UPDATE _trajgraph_meta SET value = %s WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    err = _cli("runs", "--db", f"{postgres.url}&options=-csearch_path%3D{store.schema}", code=2)
    assert "newer than this trajgraph" in err and err.count("\n") == 1, err


def test_exports_read_a_postgres_store(tmp_path: Path, postgres: Postgres) -> None:
    """`trajgraph export … --db postgresql://…` reads through the store's API (the SQLite snapshot does not apply)."""
    store = postgres.store()
    _fill(store, time.time())
    url = f"{postgres.url}&options=-csearch_path%3D{store.schema}"
    _cli("export", "dpo", "--db", url, str(tmp_path / "dpo.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["chosen"] and rows[0]["rejected"]
    _cli("export", "spans", "--db", url, str(tmp_path / "spans.jsonl"))
    assert len((tmp_path / "spans.jsonl").read_text().splitlines()) >= 6  # a span per run at least


def test_bench_never_prints_a_store_password(postgres: Postgres, tmp_path: Path) -> None:
    store = postgres.store()
    # the throwaway server trusts local connections, so a password in the URL is accepted and ignored
    url = postgres.url.replace("postgresql:///", "postgresql://postgres:s3cret-pw@/") + f"&options=-csearch_path%3D{store.schema}"
    result = CliRunner().invoke(app, ["bench", "--suite", "chain", "--tasks", "1", "--train-tasks", "1", "--optimizers", "greedy",
                                      "--budget", "8", "--out", str(tmp_path / "b"), "--db", url])
    assert result.exit_code == 0, (result.output, result.stderr)
    assert "s3cret-pw" not in result.output + result.stderr
    assert "postgres:***@" in result.output  # the store is still named
    assert len(store.runs(kind="search")) == 1


@pytest.mark.parametrize("form", [
    "postgresql://alice:s3cret-pw@/db?host={sock}&connect_timeout=2",
    "postgresql:///db?host={sock}&password=s3cret-pw&connect_timeout=2",
    "postgresql:///db?password=s3cret-pw&host={sock}&connect_timeout=2",
    "postgresql:///db?host={sock}&PassWord=s3cret-pw&connect_timeout=2",
    "postgresql:///db?host={sock}&sslpassword=s3cret-pw&password=s3cret-pw&connect_timeout=2",
    "postgresql:///db?host={sock}&password=s3cret-pw&port=notaport",
    "mysql://alice:s3cret-pw@h/db?password=s3cret-pw",
])
def test_cli_errors_never_print_a_store_password(form: str, tmp_path: Path) -> None:
    """Issue 21.6: a password in the URL, as `user:pass@` or as `?password=` (any case, any place), is masked in
    every error line (an unreachable server, a malformed URL, an unknown scheme)."""
    url = form.format(sock=tmp_path)  # a socket folder with no server in it
    err = _cli("runs", "--db", url, code=2)
    assert err.startswith("error: ") and "\n" not in err.strip() and "s3cret-pw" not in err, err
    assert "***" in err, err
