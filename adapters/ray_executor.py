"""`RayExecutor`: a bench's searches (task × optimizer) fanned out to async Ray actors (extra `trajgraph[ray]`).

    from trajgraph.adapters.ray_executor import RayExecutor
    results = asyncio.run(bench.run_bench(tasks, ["rro", "mcts"], policy_for=..., store=store,
                                          executor=RayExecutor(workers=8, address="auto")))
    # or: trajgraph bench --executor ray --ray-address auto --workers 8 --db postgresql://...

The unit of distribution is a whole search. Its branches stay inside its
worker, on LangGraph's in-memory checkpointer: a branch is a checkpoint put
plus a few node steps (about a millisecond), and a Postgres checkpoint put
costs ~250 times an in-memory one, so shipping branches across machines would
cost more than running them. Each actor runs `per_worker` searches at a time;
the driver keeps at most `workers × per_worker` in flight (bounded
concurrency), and hands the next job to whichever actor frees up first.

Where rows go:
- a shared PostgreSQL store: each worker opens the same store and writes its
  searches there itself (the store's writes are transactions, safe from many
  processes);
- a local SQLite file (or no store): a worker writes into a `RowCapture` and
  ships the rows back with the result; the driver writes each search whole,
  in one transaction. SQLite's WAL does not work over a network file system,
  so workers on other machines must not open the file.

A worker that dies mid-search (SIGKILL, a lost node): Ray restarts the actor
(`max_restarts=-1`); the driver does not let Ray retry the call blindly
(`max_task_retries=0`) but marks what the lost attempt left in a shared store
(its search run, still `running`) as `interrupted`, then queues the job again
for the next free worker. A shipped search is all-or-nothing, so a lost worker
leaves nothing in a SQLite store. In repeatable mode the table is the same as
with the local executor: each search depends only on its own task and seed.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from trajgraph.adapters.ray_connect import connect, import_ray
from trajgraph.adapters.ray_reward import shared_reward
from trajgraph.errors import ConfigError, TrajgraphError
from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step

Search = Callable[..., Awaitable[Any]]  # search(task, optimizer_name, *, store) -> TaskResult
_LOST_SLACK_S = 60.0  # clock skew allowed between the driver and a worker when finding a lost attempt's runs


class ExecutorError(TrajgraphError):
    """A job failed on every attempt (its workers kept dying)."""


class RowCapture:
    """A write-only stand-in for a store inside a worker: collects a search's rows to ship them whole.

    Rows written again under the same key (the search streams its tree as it grows, then writes the
    final tree over it) replace the earlier ones, as they would in a store.
    """

    path = "<shipped to the driver>"
    readonly = False
    write_deadline_s = 0.0  # writes land in memory at once: nothing to wait out (the writer adds its minute)

    def __init__(self) -> None:
        self._writer: Any = None  # the store's write-behind writer (trajgraph/store/writer.py), once used
        self.runs: dict[str, Run] = {}
        self.keyed: dict[str, dict[tuple[str, int], Any]] = {"steps": {}, "model_calls": {}, "search_nodes": {}}
        self.pairs: list[PreferencePair] = []

    def write(self, *, runs: Sequence[Run] = (), run_updates: Sequence[tuple[str, dict[str, Any]]] = (),
              steps: Sequence[Step] = (), model_calls: Sequence[ModelCall] = (), search_nodes: Sequence[SearchNode] = (),
              pairs: Sequence[PreferencePair] = ()) -> None:
        for run in runs:
            self.runs[run.id] = run
        for run_id, fields in run_updates:  # a run's later updates fold into the run itself
            if run_id in self.runs:
                self.runs[run_id] = self.runs[run_id].replace(**fields)
        for step in steps:
            self.keyed["steps"][(step.run_id, step.seq)] = step
        for call in model_calls:
            self.keyed["model_calls"][(call.run_id, call.seq)] = call
        for node in search_nodes:
            self.keyed["search_nodes"][(node.run_id, node.id)] = node
        self.pairs.extend(pairs)

    def add_run(self, run: Run) -> None:
        self.write(runs=[run])

    def update_run(self, run_id: str, **fields: Any) -> None:
        self.write(run_updates=[(run_id, fields)])

    def flush(self, *args: Any, **kwargs: Any) -> None:
        if self._writer is not None:
            self._writer.flush(*args, **kwargs)

    def rows(self) -> dict[str, list[Any]]:
        """Everything, for one `store.write(**rows)` (runs in the order first written: parents first)."""
        self.flush()
        return {"runs": list(self.runs.values()), **{k: list(v.values()) for k, v in self.keyed.items()}, "pairs": list(self.pairs)}


def _store_spec(store: Any) -> tuple[str, str | None] | None:
    """(url, schema) when workers can open the store themselves (a server store), else None (ship rows)."""
    url = getattr(store, "url", None)
    if isinstance(url, str) and "://" in url:
        return url, getattr(store, "schema", None)
    return None


def _worker_class(ray: Any, num_cpus: float) -> Any:
    @ray.remote(num_cpus=num_cpus, max_restarts=-1, max_task_retries=0)
    class SearchWorker:
        """One worker process: runs whole searches on its own event loop."""

        def __init__(self, store_spec: tuple[str, str | None] | None) -> None:
            self.store: Any = None
            if store_spec is not None:
                url, schema = store_spec
                if schema is not None:
                    from trajgraph.adapters.postgres import PostgresStore

                    self.store = PostgresStore(url, schema=schema)
                else:
                    from trajgraph.store import open_store

                    self.store = open_store(url)

        def pid(self) -> int:
            return os.getpid()

        def node(self) -> str:
            import ray

            return str(ray.get_runtime_context().get_node_id())

        async def run(self, search: Search, task: Any, name: str) -> tuple[Any, dict[str, list[Any]] | None]:
            if self.store is not None:
                result = await search(task, name, store=self.store)
                await asyncio.to_thread(self.store.flush)
                return result, None
            capture = RowCapture()
            result = await search(task, name, store=capture)
            return result, capture.rows()

    return SearchWorker


class RayExecutor:
    """Run searches on `workers` Ray actors, `per_worker` at a time each; see the module docstring."""

    def __init__(self, workers: int = 2, *, address: str | None = None, per_worker: int = 1, num_cpus: float = 1.0,
                 max_attempts: int = 3, on_start: Callable[[int, int], None] | None = None,
                 init_kwargs: dict[str, Any] | None = None, start_timeout_s: float = 300.0) -> None:
        if workers < 1 or per_worker < 1:
            raise ConfigError(f"workers and per_worker must be at least 1, got {workers} and {per_worker}")
        self.workers, self.per_worker, self.num_cpus = workers, per_worker, num_cpus
        self.address, self.max_attempts = address, max(1, max_attempts)
        self.on_start = on_start  # (job index, worker pid) when a job is handed out: progress, or a test's chaos hook
        self.init_kwargs = dict(init_kwargs or {})
        self.start_timeout_s = start_timeout_s  # no worker at all started by then: the cluster has no room
        self.ray: Any = None
        self.lost: list[tuple[int, str]] = []  # (job index, why) for every attempt a dead worker took with it
        self.startup_s = 0.0  # the last map's time to start its actors (a process and imports each)
        self.nodes: set[str] = set()  # the Ray nodes its actors ran on

    def connect(self) -> Any:
        """Join (or start) Ray now: call before any work to fail early on a bad address."""
        if self.ray is None:
            self.ray = connect(self.address, **self.init_kwargs)
        return self.ray

    def shared_reward(self, path: str, **options: Any) -> Any:
        """One reward model for every worker: the shared reward actor (ray_reward.py) on this cluster."""
        self.connect()
        return shared_reward(path, address=self.address, **options)

    async def map(self, search: Search, jobs: Sequence[tuple[Any, str]], *, store: Any = None,
                  on_result: Callable[[Any], None] | None = None) -> list[Any]:
        """Every job's result, in job order; rows land in `store` (written there by workers, or shipped)."""
        if not jobs:
            return []
        ray = self.connect()
        spec = _store_spec(store)
        worker_cls = _worker_class(ray, self.num_cpus)
        # put once, resolved with every call: a restarted actor needs no constructor argument from the
        # object store (ray #53727), and each call still finds the search in its node's object store
        search_ref = ray.put(search)
        t0 = time.perf_counter()
        actors = [worker_cls.remote(spec) for _ in range(min(self.workers, max(1, len(jobs))))]
        queue = collections.deque(range(len(jobs)))
        results: list[Any] = [None] * len(jobs)
        attempts = [0] * len(jobs)
        left = [len(jobs)]
        all_done, first_up = asyncio.Event(), asyncio.Event()
        self.nodes = set()
        dead = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)

        async def up(actor: Any) -> bool:
            """Wait for this actor to start, or for the work to be done without it (a cluster with fewer
            free CPUs than workers leaves some actors pending; the others take every job)."""
            ready = asyncio.ensure_future(_node_of(actor))
            done = asyncio.ensure_future(all_done.wait())
            await asyncio.wait({ready, done}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            if not ready.done():
                ready.cancel()
                return False
            self.nodes.add(ready.result())
            if not first_up.is_set():
                self.startup_s = time.perf_counter() - t0
                first_up.set()
            return True

        async def watchdog() -> None:
            try:
                await asyncio.wait_for(first_up.wait(), self.start_timeout_s)
            except TimeoutError:
                raise ExecutorError(f"no Ray worker started in {self.start_timeout_s:g} s: the cluster has no free "
                                    f"{self.num_cpus:g} CPU for one (see `ray status`)") from None

        async def drive(actor: Any) -> None:
            pid: int | None = None
            if not await up(actor):
                return
            while queue:
                i = queue.popleft()
                task, name = jobs[i]
                attempts[i] += 1
                started = time.time()
                try:
                    if self.on_start is not None:
                        pid = pid if pid is not None else await actor.pid.remote()
                        self.on_start(i, pid)
                    result, rows = await actor.run.remote(search_ref, task, name)
                except dead as exc:
                    pid = None  # the actor restarts as a new process
                    why = f"{type(exc).__name__} on attempt {attempts[i]}"
                    self.lost.append((i, why))
                    if spec is not None:
                        await asyncio.to_thread(_mark_lost, store, task, name, started, why)
                    if attempts[i] >= self.max_attempts:
                        raise ExecutorError(f"search {getattr(task, 'id', task)} × {name}: every attempt's worker died "
                                            f"({attempts[i]} tries); see the Ray logs") from None
                    queue.appendleft(i)  # first in line for the next free worker (another one: this one is restarting)
                    if not await _back(ray, actor):
                        return  # this actor is gone for good; the others carry on
                    continue
                if rows is not None and store is not None:
                    await asyncio.to_thread(store.write, **rows)  # the whole search in one transaction
                results[i] = result
                left[0] -= 1
                if not left[0]:
                    all_done.set()
                if on_result is not None:
                    on_result(result)

        try:
            await asyncio.gather(watchdog(), *(drive(a) for a in actors for _ in range(self.per_worker)))
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
        if queue:
            raise ExecutorError(f"{len(queue)} search(es) not run: every Ray worker died for good; see the Ray logs")
        return results


async def _node_of(actor: Any) -> str:
    return str(await actor.node.remote())


async def _back(ray: Any, actor: Any, patience_s: float = 120.0) -> bool:
    """Wait until a restarting actor answers again; False when it will not come back."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        try:
            await actor.pid.remote()
            return True
        except ray.exceptions.ActorDiedError:
            return False
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
            await asyncio.sleep(0.2)
    return False


def _mark_lost(store: Any, task: Any, name: str, started: float, why: str) -> None:
    """A dead worker's search run stays `running` in a shared store: mark it, so nothing half-written looks live."""
    for run in store.runs(kind="search", status="running", task=getattr(task, "id", None), tag=name, since=started - _LOST_SLACK_S):
        store.update_run(run.id, status="interrupted", ended_at=time.time(),
                         error=f"worker lost mid-search ({why}); the search ran again on another worker")


__all__ = ["RayExecutor", "RowCapture", "ExecutorError", "connect", "import_ray"]
