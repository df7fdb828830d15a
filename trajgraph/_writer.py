"""Batched, off-the-hot-path writes to a store.

Steps and model calls are appended by the recording graph to a deque (one
append, no lock, no wake-up) and written by one background thread per store,
which wakes every 50 ms or when asked, and commits what has gathered in one
transaction (JSON encoding happens there too, not on the graph's thread). A
run's end flushes synchronously, so once `invoke` returns its trajectory is on
disk; a crash loses only rows not yet committed (WAL keeps the rest intact).

Why not a `queue.Queue`: every `put` wakes the writer, and on a fast agent
those wake-ups fight the graph's thread for the GIL. The thread ends after a
second with nothing to do and starts again on the next row, so an idle store
costs no thread, and it holds its store weakly, so a dropped store is freed.
"""

from __future__ import annotations

import atexit
import collections
import logging
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
        self._store = weakref.ref(store)
        self.path = store.path
        self._pending: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self.error: BaseException | None = None

    def put(self, kind: str, item: Any) -> None:
        self._pending.append((kind, item))  # atomic under the GIL; the writer picks it up on its next pass
        if not self._running:
            self._start()

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
        store = self._store()
        if len(batch) and store is not None:
            try:
                store.write(
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


_FIELDS = {"run": "runs", "run_update": "run_updates", "step": "steps", "model_call": "model_calls"}

_WRITERS: weakref.WeakKeyDictionary[Store, Writer] = weakref.WeakKeyDictionary()  # values hold keys weakly
_LOCK = threading.Lock()


def writer_for(store: Store) -> Writer:
    with _LOCK:
        w = _WRITERS.get(store)
        if w is None:
            w = _WRITERS[store] = Writer(store)
        return w


@atexit.register
def _flush_all() -> None:
    for w in list(_WRITERS.values()):
        try:
            w.flush(timeout=10)
        except BaseException:  # interpreter is exiting; nothing better to do
            pass
