"""Batched, off-the-hot-path writes to a store.

Steps and model calls are appended by the recording graph to a deque (one
append, no lock, no wake-up) and written by one background thread per store,
which wakes every 50 ms or when asked, and commits what has gathered in one
transaction (JSON encoding happens there too, not on the graph's thread).
A run that succeeds does not wait for its rows: its end wakes the writer, which
commits them while the caller goes on (a millisecond or two later), and reads
through the same Store (`store.runs()` right after `invoke`) flush first, so a
program always sees its own runs; `store.flush()` waits explicitly. A failed or
interrupted run is flushed before its exception or interrupt reaches the caller.
Pending rows are flushed at interpreter exit and when a multiprocessing child
ends (it skips atexit). A crash loses only rows not yet committed; WAL keeps
everything committed intact.

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
from dataclasses import dataclass, field
from typing import Any

from trajgraph.store import Store
from trajgraph.trajectory import ModelCall, Run, Step

log = logging.getLogger("trajgraph")

_FLUSH_INTERVAL_S = 0.05
_IDLE_EXIT_S = 1.0
_MAX_BATCH = 2000


@dataclass
class _Batch:
    runs: list[Run] = field(default_factory=list)
    run_updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    model_calls: list[ModelCall] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs) + len(self.run_updates) + len(self.steps) + len(self.model_calls)


class Writer:
    """One background writer per store; `flush()` waits for everything appended so far."""

    def __init__(self, store: Store) -> None:
        self.store = store  # strongly: rows still pending must be written even if the caller dropped the store
        self.path = store.path
        self._pending: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self.error: BaseException | None = None

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def put(self, kind: str, item: Any) -> None:
        self._pending.append((kind, item))  # atomic under the GIL; the writer picks it up on its next pass
        if not self._running:
            self._start()

    def wake(self) -> None:
        """Write what is pending now rather than at the next tick (a run just ended)."""
        self._wake.set()

    def flush(self, timeout: float = 60.0) -> None:
        done = threading.Event()
        self._pending.append(("flush", done))
        self._start()
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError(f"trajgraph: store writer for {self.path} did not flush in {timeout}s")
        if self.error is not None:
            error, self.error = self.error, None
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
        batch, waiters = _Batch(), []
        while self._pending and len(batch) < _MAX_BATCH:
            kind, item = self._pending.popleft()
            if kind == "flush":
                waiters.append(item)
            else:
                getattr(batch, _FIELDS[kind]).append(item)
        _fold_run_updates(batch)
        if len(batch):
            try:
                self.store.write(
                    runs=batch.runs,
                    run_updates=batch.run_updates,
                    steps=batch.steps,
                    model_calls=batch.model_calls,
                )
            except BaseException as exc:  # keep the thread alive; report on the next flush
                log.error("trajgraph: failed to write %d rows to %s: %s", len(batch), self.path, exc)
                self.error = exc
        for w in waiters:
            w.set()

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


_FIELDS = {"run": "runs", "run_update": "run_updates", "step": "steps", "model_call": "model_calls"}

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
