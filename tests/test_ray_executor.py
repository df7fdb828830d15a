"""adapters/ray_executor.py: a bench's searches on Ray actors give the local executor's table, with every
run in the store exactly once (SQLite shipped to the driver, or a shared PostgreSQL); a worker killed
mid-search costs a retry and leaves nothing half-written unmarked; bad configuration is one line, exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests._services import Postgres
from trajgraph import bench
from trajgraph.adapters.ray_executor import RayExecutor
from trajgraph.cli import app
from trajgraph.cli.bench import load_suite, policy_factory
from trajgraph.store import Store

NAMES = ["greedy", "rro"]


@pytest.fixture(autouse=True)
def _close_stores(postgres: Postgres) -> Any:
    yield
    postgres.close_stores()


def _key(r: Any) -> tuple[Any, ...]:
    """Everything a result row says except its wall time."""
    return (r.optimizer, r.task, r.outcome, r.success, r.policy_calls, r.overrun_policy_calls, r.env_steps, r.decisions,
            round(r.candidates_per_step, 9), r.stopped_by)


def _searches(store: Any) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = {}
    for run in store.runs(kind="search"):
        name = next(t for t in run.tags if t in NAMES)
        out.setdefault((run.task, name), []).append(run)
    return out


def _bench(store: Any, executor: Any = None, policy_for: Any = None, tasks: int = 3) -> list[Any]:
    test = load_suite("chain").tasks("test", tasks, 0)
    policy_for = policy_for or policy_factory("simulated", model=None, skill=0.6, seed=0)[0]
    return asyncio.run(bench.run_bench(test, NAMES, policy_for=policy_for, budget=16, store=store, repeatable=True,
                                       executor=executor))


def test_ray_gives_the_local_table_and_ships_rows_to_a_sqlite_store(ray_local: Any, tmp_path: Path) -> None:
    local_store, ray_store = Store(tmp_path / "local.db").setup(), Store(tmp_path / "ray.db").setup()
    local = _bench(local_store)
    remote = _bench(ray_store, RayExecutor(workers=2))
    assert [_key(r) for r in remote] == [_key(r) for r in local]
    searches = _searches(ray_store)
    assert sorted(searches) == sorted((r.task, r.optimizer) for r in local)  # every search there ...
    assert all(len(runs) == 1 for runs in searches.values())  # ... exactly once
    assert {r.run_id for r in remote} == {runs[0].id for runs in searches.values()}
    for table in ("runs", "steps", "search_nodes", "pairs"):  # and with all its rows, as the local executor wrote them
        assert ray_store.count(table) == local_store.count(table), table
    assert not ray_store.runs(status="running")


def test_cli_ray_bench_on_postgres_matches_local(ray_local: Any, postgres: Postgres, tmp_path: Path) -> None:
    store = postgres.store()
    url = f"{postgres.url}&options=-csearch_path%3D{store.schema}"
    common = ["bench", "--suite", "chain", "--tasks", "3", "--optimizers", ",".join(NAMES), "--budget", "16", "--repeatable"]
    for args in (["--out", str(tmp_path / "local")], ["--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2", "--db", url]):
        result = CliRunner().invoke(app, [*common, *args])
        assert result.exit_code == 0, (result.output, result.stderr)
    tables = [json.loads((tmp_path / d / "bench.json").read_text()) for d in ("local", "ray")]
    for t in tables:
        for row in (*t["summaries"], *t["results"]):
            row.pop("wall_s")
            row.pop("run_id", None)
    assert tables[0]["summaries"] == tables[1]["summaries"] and tables[0]["results"] == tables[1]["results"]
    searches = _searches(store)
    assert len(searches) == 3 * len(NAMES) and all(len(runs) == 1 and runs[0].status != "running" for runs in searches.values())
    assert store.count("runs") == Store(tmp_path / "local" / "bench.db").setup().count("runs")


@dataclass
class _Slow:
    """The simulated policy, slowed so that a search lasts long enough to be killed in the middle."""

    inner: Any
    delay: float

    def __call__(self, state: Any) -> Any:
        time.sleep(self.delay)
        return self.inner(state)


def _slow_policy_for(task: Any) -> Any:
    return _Slow(policy_factory("simulated", model=None, skill=0.6, seed=0)[0](task), 0.1)


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_a_worker_killed_mid_search_is_retried_and_marked(backend: str, ray_local: Any, postgres: Postgres, tmp_path: Path) -> None:
    """Postgres: the lost attempt's search run (written by the worker) is marked interrupted. SQLite: the
    lost attempt had shipped nothing, so the store holds only whole searches."""
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import the tests
    reference = _bench(None, policy_for=_slow_policy_for)
    store = postgres.store() if backend == "postgres" else Store(tmp_path / "s.db").setup()
    killed: list[int] = []

    def chaos(job: int, pid: int) -> None:  # the first rro search: kill its worker once it is well into the search
        if job == 3 and not killed:
            killed.append(pid)
            threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()

    executor = RayExecutor(workers=2, on_start=chaos)
    results = _bench(store, executor, policy_for=_slow_policy_for)
    assert killed and executor.lost and executor.lost[0][0] == 3  # the kill landed mid-search, on that job
    assert [_key(r) for r in results] == [_key(r) for r in reference]  # the bench finished with the same table
    searches = _searches(store)
    live = {k: [r for r in runs if r.status != "interrupted"] for k, runs in searches.items()}
    assert all(len(runs) == 1 and runs[0].status in ("succeeded", "unfinished") for runs in live.values()), live
    lost = [r for runs in searches.values() for r in runs if r.status == "interrupted"]
    if backend == "postgres":
        assert 1 <= len(lost) <= len(executor.lost) and all("worker lost" in (r.error or "") for r in lost)
    else:
        assert lost == [] and sum(len(runs) for runs in searches.values()) == len(results)  # nothing of the lost attempt arrived
    assert not store.runs(status="running")  # nothing half-written left looking live
    assert {r.run_id for r in results} == {runs[0].id for runs in live.values()}


def _cli_error(args: list[str], tmp_path: Path, *words: str) -> None:
    result = CliRunner().invoke(app, ["bench", "--suite", "chain", "--tasks", "2", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, (result.output, result.stderr)
    assert all(w in result.stderr for w in words) and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_bad_executor_configuration_is_one_line_exit_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _cli_error(["--executor", "ray", "--ray-address", f"127.0.0.1:{port}"], tmp_path, "no Ray cluster at", "ray start --head")
    _cli_error(["--executor", "dask"], tmp_path, "unknown executor 'dask'")
    _cli_error(["--ray-address", "auto"], tmp_path, "--ray-address needs --executor ray")


def test_ray_not_installed_is_one_line_exit_2(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None\nfrom trajgraph.cli import main\n"
            f"sys.argv = ['trajgraph', 'bench', '--executor', 'ray', '--out', {str(tmp_path / 'out')!r}]\nmain()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and "pip install 'trajgraph[ray]'" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "out").exists()
