"""Batched, off-the-hot-path writes to a store.

Steps and model calls are appended by the recording graph to a deque (one
append, no lock, no wake-up) and written by one background thread per store,
which wakes every 50 ms or when asked, and commits what has gathered in one
transaction (JSON encoding happens there too, not on the graph's thread).
A recorded run's end waits for its rows (`flush(run_id=...)`, a fraction of a
millisecond on a small graph): whatever the run's outcome, its rows are
committed, or their loss raised, before `invoke` returns. Reads through the same
Store (`store.runs()`) flush first, so a program always sees its own runs;
`store.flush()` waits explicitly.
Pending rows are flushed at interpreter exit and when a multiprocessing child
ends (it skips atexit). A crash loses only rows not yet committed; WAL keeps
everything committed intact.

A failed write is never silent and never takes other rows with it: when a
batch fails, its rows are written again one by one (a plain-text column that
SQLite cannot hold, such as a lone surrogate in an error message, is retried
with that text escaped), so healthy rows land; the run a lost row belonged to
is marked failed with the cause (also if its own end comes later and says it
succeeded), and the error is raised by the next `flush()` for that run, which
recording does at the end of every `invoke`, or by `store.flush()`.
A store whose server stayed away past its `write_deadline_s` (the store retried
the batch until then) loses that batch whole, never row by row: each run in it
is reported once, and its later updates say `failed` with the cause, so a run
is either stored whole or told to have lost rows, never silently half.

A recorder's hot path may hand over a row unbuilt (`Later`): the writer's thread builds it with the rest
of its batch. Built there, next to the encoding that reads it, a step costs a fraction of what building it
costs between two of LangGraph's own node calls on the graph's thread, where every cache is cold.

Why not a `queue.Queue`: every `put` wakes the writer, and on a fast agent
those wake-ups fight the graph's thread for the GIL. The thread ends after a
second with nothing to do and starts again on the next row, so an idle store
costs no thread (and a dropped store and its writer are then freed together).
"""

from __future__ import annotations

import atexit
import collections
import logging
import multiprocessing.util
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trajgraph.errors import StoreError, StoreUnavailableError
from trajgraph.store import Store
from trajgraph.store.rows import escape_text
from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step

log = logging.getLogger("trajgraph")

_FLUSH_INTERVAL_S = 0.05
_IDLE_EXIT_S = 1.0
_MAX_BATCH = 2000


@dataclass(frozen=True, slots=True)
class Later:
    """A row of run `run_id` that the writer's thread builds (`build()`), before it encodes its batch."""

    run_id: str
    build: Callable[[], Any]


@dataclass
class _Batch:
    runs: list[Run] = field(default_factory=list)
    run_updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    model_calls: list[ModelCall] = field(default_factory=list)
    search_nodes: list[SearchNode] = field(default_factory=list)
    pairs: list[PreferencePair] = field(default_factory=list)

    def __len__(self) -> int:
        return (len(self.runs) + len(self.run_updates) + len(self.steps) + len(self.model_calls)
                + len(self.search_nodes) + len(self.pairs))

    def rows(self) -> dict[str, Any]:
        return {"runs": self.runs, "run_updates": self.run_updates, "steps": self.steps,
                "model_calls": self.model_calls, "search_nodes": self.search_nodes, "pairs": self.pairs}


class Writer:
    """One background writer per store; `flush()` waits for everything appended so far."""

    def __init__(self, store: Store) -> None:
        self.store = store  # strongly: rows still pending must be written even if the caller dropped the store
        self.path = store.path
        self._pending: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        # run id (None: rows of no run) -> the first error that lost one of its rows, until raised
        self._errors: dict[str | None, StoreError] = {}
        self._failed: dict[str, str] = {}  # run id -> cause: its later updates cannot say it succeeded

    @property
    def error(self) -> StoreError | None:
        """The first write error not raised yet (any run)."""
        return next(iter(self._errors.values()), None)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def put(self, kind: str, item: Any) -> None:
        """Queue a row (or a `Later` that builds it) to be written with the next batch."""
        self._pending.append((kind, item))  # atomic under the GIL; the writer picks it up on its next pass
        if not self._running:
            self._start()

    def wake(self) -> None:
        """Write what is pending now rather than at the next tick (a run just ended)."""
        self._wake.set()

    def flush(self, timeout: float | None = None, *, run_id: str | None = None, raise_errors: bool = True) -> None:
        """Wait until everything put so far is written; then raise the write error of run `run_id`
        (of any run when None) that nobody has been told about yet. By default waits out the store's
        `write_deadline_s` (a server coming back) and a minute more."""
        if timeout is None:
            timeout = self.store.write_deadline_s + 60.0
        done = threading.Event()
        self._pending.append(("flush", done))
        self._start()
        self._wake.set()
        if not done.wait(timeout):
            raise StoreError(f"{self.path}: the store writer did not finish writing in {timeout:g} s; rows may be lost")
        if raise_errors:
            self.raise_errors(run_id)

    def raise_errors(self, run_id: str | None = None) -> None:
        """Raise (once) the error that lost rows of `run_id`, or the first one of any run."""
        with self._lock:
            if run_id is not None:
                error = self._errors.pop(run_id, None)
            elif self._errors:
                error = self._errors.pop(next(iter(self._errors)))
                if self._errors:
                    error = StoreError(f"{error} (and {len(self._errors)} other run(s) lost rows)")
                    self._errors.clear()
            else:
                error = None
        if error is not None:
            raise error

    def _start(self) -> None:
        with self._lock:
            if not self._running:
                self._running = True
                threading.Thread(target=self._loop, name=f"trajgraph-writer:{self.path}", daemon=True).start()

    def _loop(self) -> None:
        idle = 0.0
        while True:
            self._wake.wait(_FLUSH_INTERVAL_S)
            self._wake.clear()
            if not self._pending:
                idle += _FLUSH_INTERVAL_S
                if idle >= _IDLE_EXIT_S:
                    with self._lock:
                        self._running = False
                    if self._pending:  # appended while we stopped: its put() may have seen _running True
                        self._start()
                    return
                continue
            idle = 0.0
            while self._pending:
                self._drain()

    def _drain(self) -> None:
        """Write up to one batch of what is pending, then release whoever waits for a flush."""
        batch, waiters, n = _Batch(), [], 0
        while self._pending and n < _MAX_BATCH:
            kind, item = self._pending.popleft()
            if kind == "flush":
                waiters.append(item)
                continue
            if type(item) is Later:
                item = self._built(kind, item)
                if item is None:
                    continue
            getattr(batch, _FIELDS[kind]).append(item)
            n += 1
        _fold_run_updates(batch)
        if self._failed:
            self._keep_failed(batch)
        if len(batch):
            try:
                self.store.write(**batch.rows())
            except BaseException as exc:  # keep the thread alive; report on the next flush
                self._write_one_by_one(batch, exc)
        for w in waiters:
            w.set()

    def _built(self, kind: str, later: Later) -> Any:
        """The row `later` builds; None, and the loss reported to its run like a failed write, if it cannot."""
        try:
            return later.build()
        except Exception as exc:
            self._lose(later.run_id, StoreError(f"{self.path}: a {kind.replace('_', ' ')} row could not be built "
                                                f"({type(exc).__name__}: {exc})"), 1)
            return None

    def _write_one_by_one(self, batch: _Batch, exc: BaseException) -> None:
        """After a failed batch: every row alone, so one bad row loses only itself."""
        if "locked" in str(exc) or isinstance(exc, StoreUnavailableError):
            # another process holds the file, or the server stayed away past the deadline: a retry per row would
            # wait per row. The batch is lost whole (never half of it written), and its runs told so.
            for run_id in _run_ids(batch):
                self._lose(run_id, _as_store_error(self.path, exc), len(batch))
            return
        lost: dict[str | None, list[Any]] = {}
        for table, items in batch.rows().items():
            for item in items:
                error = self._write_row(table, item)
                if error is not None:
                    lost.setdefault(_run_of(table, item), []).append(error)
        for run_id, errors in lost.items():
            self._lose(run_id, errors[0], len(errors))

    def _write_row(self, table: str, item: Any) -> StoreError | None:
        try:
            self.store.write(**{table: [item]})
            return None
        except Exception as exc:
            first = _as_store_error(self.path, exc)
        escaped = escape_text(item)
        if escaped is item:
            return first
        try:  # text SQLite cannot hold (a lone surrogate from os.fsdecode): written with it escaped
            self.store.write(**{table: [escaped]})
            return None
        except Exception as exc:
            return _as_store_error(self.path, exc)

    def _lose(self, run_id: str | None, error: StoreError, rows: int) -> None:
        """Remember the loss for the run's flush, log it, and mark the run failed (if the store still takes that)."""
        what = f"run {run_id}" if run_id else "the store"
        cause = f"StoreError: {rows} row(s) of {what} could not be stored: {error}"
        log.error("trajgraph: %s", cause)
        with self._lock:
            self._errors.setdefault(run_id, StoreError(cause))
        if run_id is None:
            return
        self._failed.setdefault(run_id, cause)
        if isinstance(error, StoreUnavailableError):
            return  # marking it failed now would wait out the deadline again; its next update says failed
        try:
            self.store.write(run_updates=[(run_id, {"status": "failed", "error": self._failed[run_id]})])
        except StoreError:
            pass  # the same cause (a full disk, a read-only file): already reported

    def _keep_failed(self, batch: _Batch) -> None:
        """A run that lost rows stays failed with that cause, whatever its later updates say."""
        def fix(run_id: str, fields: dict[str, Any]) -> dict[str, Any]:
            cause = self._failed.get(run_id)
            return fields if cause is None or "status" not in fields else {**fields, "status": "failed", "error": cause}

        batch.runs = [r.replace(status="failed", error=self._failed[r.id]) if r.id in self._failed else r for r in batch.runs]
        batch.run_updates = [(run_id, fix(run_id, fields)) for run_id, fields in batch.run_updates]

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread is not here, and its pending rows are the parent's."""
        self._pending = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running = False


def _fold_run_updates(batch: _Batch) -> None:
    """A run that starts and ends within one batch is inserted once, finished, not inserted then updated."""
    if not batch.runs or not batch.run_updates:
        return
    index = {run.id: i for i, run in enumerate(batch.runs)}
    rest = []
    for run_id, fields in batch.run_updates:
        i = index.get(run_id)
        if i is None:
            rest.append((run_id, fields))
        else:
            batch.runs[i] = batch.runs[i].replace(**fields)
    batch.run_updates = rest


def _as_store_error(path: Any, exc: BaseException) -> StoreError:
    return exc if isinstance(exc, StoreError) else StoreError(f"{path}: could not write ({type(exc).__name__}: {exc})")


def _run_of(table: str, item: Any) -> str | None:
    if table == "run_updates":
        return str(item[0])
    return getattr(item, "id" if table == "runs" else "run_id", None)


def _run_ids(batch: _Batch) -> list[str | None]:
    return list(dict.fromkeys(_run_of(table, item) for table, items in batch.rows().items() for item in items))


_FIELDS = {"run": "runs", "run_update": "run_updates", "step": "steps", "model_call": "model_calls",
           "search_node": "search_nodes", "pair": "pairs"}

_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()
_LOCK = threading.Lock()


def writer_for(store: Store) -> Writer:
    """The store's writer; the store reads through it too (`Store._query` flushes it first)."""
    _ensure_exit_flush()
    with _LOCK:
        if store._writer is None:
            store._writer = Writer(store)
            _WRITERS.add(store._writer)
        return store._writer


@atexit.register
def _flush_all() -> None:
    for w in list(_WRITERS):
        try:
            w.flush(timeout=10)
        except BaseException as exc:  # the process is ending: say what was lost, then let it end
            log.error("trajgraph: rows for %s may be lost at exit: %s: %s", w.path, type(exc).__name__, exc)


def _after_fork_in_child() -> None:
    """The parent's writers (their threads, locks and pending rows) are not the child's: forget them."""
    global _LOCK
    _LOCK = threading.Lock()
    for w in list(_WRITERS):
        w._after_fork()
    _WRITERS.clear()


_FINALIZER: multiprocessing.util.Finalize | None = None


def _ensure_exit_flush() -> None:
    """multiprocessing children end with os._exit (no atexit) after running its finalizers;
    a child's bootstrap clears the finalizers registered before it, so check on every use."""
    global _FINALIZER
    if _FINALIZER is None or not _FINALIZER.still_active():
        _FINALIZER = multiprocessing.util.Finalize(None, _flush_all, exitpriority=100)


os.register_at_fork(after_in_child=_after_fork_in_child)
