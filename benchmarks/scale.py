"""Scale-out: store write rates (SQLite vs PostgreSQL, 1/2/4 writer processes), searches/s on Ray
(local executor vs 1 and 2 Ray workers), the shared reward actor's batch size and latency against
the number of callers, and one bench on a simulated 3-node Ray cluster (`ray.cluster_utils.Cluster`).

Read the numbers with the machine in mind: this runs on 2 cores shared with
other work, so 2 workers cannot beat 1 by much (Ray's own processes, the
store server and the driver compete for the same two cores) and every figure
is noisy; the table prints the load average next to it. The shape, not the
size, is what carries over to a real cluster.

Run: python benchmarks/scale.py [--quick] [--postgres URL] [--only store,ray,reward,cluster]
(without --postgres a throwaway PostgreSQL is started as the tests do; Debian's postgresql package)
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _table import emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests._services: the throwaway PostgreSQL

from trajgraph.trajectory import Run, Step

# -- store rows/s ------------------------------------------------------------------------------------

def _writer(make: Any, worker: int, runs: int, steps: int, batch: int, out: Any) -> None:
    store = make()
    t0 = time.perf_counter()
    for r in range(runs):
        run_id = f"w{worker}-r{r}"
        store.write(runs=[Run(id=run_id, graph="bench", started_at=time.time())])
        for seq in range(0, steps, batch):
            store.write(steps=[Step(run_id=run_id, seq=s, node="policy", update={"action": f"go {s}", "obs": "a room " * 8})
                               for s in range(seq, min(steps, seq + batch))])
        store.update_run(run_id, status="succeeded", ended_at=time.time())
    out.put(time.perf_counter() - t0)


def scratch(prefix: str = "tg-scale-") -> Path:
    """A temporary folder removed when the script exits (stores and a throwaway PostgreSQL: hundreds of MB)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def store_rates(pg_url: str, quick: bool) -> list[dict[str, Any]]:
    from trajgraph.adapters.postgres import PostgresStore
    from trajgraph.store import Store

    runs, steps, batch = (10, 100, 25) if quick else (40, 200, 25)
    rows = []
    tmp = scratch()
    for backend in ("sqlite", "postgres"):
        for writers in (1, 2, 4):
            tag = f"s{os.getpid()}_{writers}"
            make = (lambda p=tmp / f"{tag}.db": Store(p)) if backend == "sqlite" else (lambda t=tag: PostgresStore(pg_url, schema=t))
            make().setup().close()
            ctx = multiprocessing.get_context("fork")
            out = ctx.Queue()
            t0 = time.perf_counter()
            procs = [ctx.Process(target=_writer, args=(make, w, runs, steps, batch, out)) for w in range(writers)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            wall = time.perf_counter() - t0
            total = writers * runs * (steps + 2)  # steps, plus each run's insert and final update
            check = make().setup()
            assert check.count("steps") == writers * runs * steps  # nothing lost
            rows.append({"backend": backend, "writers": writers, "rows": total, "wall_s": wall, "rows_per_s": total / wall,
                         "writes_per_s": writers * runs * (steps // batch + 2) / wall, "load_avg": os.getloadavg()[0]})
    return rows


# -- searches/s on Ray ----------------------------------------------------------------------------

class _Latency:
    """The simulated policy behind a model's latency (a served LLM answers in tens of milliseconds):
    searches then wait more than they compute, the case fan-out is for."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def __call__(self, state: Any) -> Any:
        time.sleep(self.delay_s)
        return self.inner(state)


def _policy_for(delay_s: float) -> Any:
    from trajgraph.cli.bench import policy_factory

    simulated = policy_factory("simulated", model=None, skill=0.6, seed=0)[0]
    return simulated if not delay_s else (lambda task: _Latency(simulated(task), delay_s))


def _bench(tasks: int, executor: Any, store: Any, delay_s: float = 0.0) -> tuple[float, list[Any]]:
    from trajgraph import bench
    from trajgraph.cli.bench import load_suite

    test = load_suite("chain").tasks("test", tasks, 0)
    t0 = time.perf_counter()
    results = asyncio.run(bench.run_bench(test, ["greedy", "rro"], policy_for=_policy_for(delay_s), budget=16, store=store,
                                          repeatable=True, executor=executor, concurrency=2))
    return time.perf_counter() - t0, results


def search_rates(pg_url: str, quick: bool) -> list[dict[str, Any]]:
    from trajgraph.adapters.postgres import PostgresStore
    from trajgraph.adapters.ray_executor import RayExecutor, connect
    from trajgraph.store import Store

    connect(None, num_cpus=2)
    tmp = scratch()
    rows = []
    for delay_s, tasks in ((0.0, 10 if quick else 40), (0.02, 5 if quick else 15)):
        reference = None
        for workers in (0, 1, 2):
            for backend in ("sqlite", "postgres"):
                name = f"d{int(delay_s * 1000)}w{workers}"
                store = Store(tmp / f"{name}.db") if backend == "sqlite" else PostgresStore(pg_url, schema=f"b{os.getpid()}_{name}")
                executor = RayExecutor(workers=workers) if workers else None
                wall, results = _bench(tasks, executor, store, delay_s)
                same = [(r.optimizer, r.task, r.outcome, r.policy_calls) for r in results]
                reference = reference or same
                startup = executor.startup_s if executor else 0.0
                rows.append({"policy_latency_ms": int(delay_s * 1000), "executor": "ray" if workers else "local (2 at a time)",
                             "workers": workers or "-", "store": backend, "searches": len(results), "wall_s": wall,
                             "actor_start_s": startup, "searches_per_s": len(results) / wall,
                             "after_start_per_s": len(results) / max(1e-9, wall - startup), "same_table": same == reference,
                             "load_avg": os.getloadavg()[0]})
    return rows


# -- the shared reward actor ------------------------------------------------------------------------

def reward_rates(quick: bool) -> list[dict[str, Any]]:
    from trajgraph.adapters.ray_executor import connect
    from trajgraph.adapters.ray_reward import latency_probe, shared_reward
    from trajgraph.reward import RewardItem, init_model

    connect(None, num_cpus=2)
    model = init_model(scratch() / "rm", max_length=64)
    reward = shared_reward(str(model), device="cpu", max_batch=256)
    items = [RewardItem(f"task {i}: reach the tower", (("go north", f"room {i}"),), "open door") for i in range(4)]
    latency_probe(reward, items, callers=4, rounds=2)  # warm-up
    rows = []
    for callers in (1, 4, 16, 64) if not quick else (1, 16):
        reward.actor.reset_stats.remote()
        probe = latency_probe(reward, items, callers=callers, rounds=8 if quick else 20)
        stats = reward.stats()
        rows.append({"callers": callers, "items_per_call": len(items), "mean_batch_items": stats["mean_batch"],
                     "max_batch_items": stats["max_batch"], "items_per_s": probe["items_per_s"], "p50_ms": probe["p50_ms"],
                     "p95_ms": probe["p95_ms"], "device": stats["device"]})
    return rows


# -- a simulated 3-node cluster ---------------------------------------------------------------------

def cluster_run(quick: bool) -> list[dict[str, Any]]:
    import ray
    from ray.cluster_utils import Cluster

    from trajgraph.adapters.ray_executor import RayExecutor
    from trajgraph.store import Store

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        store = Store(scratch() / "cluster.db")
        executor = RayExecutor(workers=3)
        wall, results = _bench(6 if quick else 20, executor, store, delay_s=0.02)
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        searches = {(r.task, r.optimizer) for r in results}
        return [{"nodes": nodes, "nodes_used": len(executor.nodes), "workers": 3, "searches": len(results), "wall_s": wall,
                 "actor_start_s": executor.startup_s, "after_start_per_s": len(results) / max(1e-9, wall - executor.startup_s),
                 "search_runs_in_store": store.count("runs") and len(store.runs(kind="search")), "distinct": len(searches),
                 "load_avg": os.getloadavg()[0]}]
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", help="a server to use (default: a throwaway one, as in the tests)")
    parser.add_argument("--only", default="store,ray,reward,cluster")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    server = None
    url = args.postgres
    if url is None and parts & {"store", "ray"}:
        from tests._services import start_postgres

        server = start_postgres(scratch("trajgraph-pg-"))
        url = server.url
    note = "2 shared cores: noisy, and 2 workers cannot show much speed-up here (see the module docstring)"
    try:
        if "store" in parts:
            emit("scale_store", "store rows/s by writer processes (each run: 1 insert, steps in batches of 25, 1 update)",
                 store_rates(url, args.quick), {"note": note})
        if "ray" in parts:
            emit("scale_searches", "searches/s: local executor vs Ray workers (chain suite, greedy + rro, repeatable; "
                 "0 or 20 ms policy latency)",
                 search_rates(url, args.quick), {"note": note})
        if "reward" in parts:
            emit("scale_reward_actor", "shared reward actor: batch size and latency vs concurrent callers (untrained MiniLM-L6, 64 tokens, CPU)",
                 reward_rates(args.quick), {"note": note})
        if "cluster" in parts:
            emit("scale_cluster", "one bench on a simulated 3-node Ray cluster (ray.cluster_utils.Cluster, 1 CPU a node, 20 ms policy latency)",
                 cluster_run(args.quick), {"note": note})
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
