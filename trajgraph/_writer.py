"""Batched, off-the-hot-path writes to a store.

Steps and model calls are queued by the recording graph and written by one
background thread per store, in transactions of up to a few hundred rows. A
run's end flushes synchronously, so once `invoke` returns its trajectory is on
disk; a crash loses only rows not yet committed (WAL keeps the rest intact).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from trajgraph.store import Store
from trajgraph.trajectory import ModelCall, Run, Step

log = logging.getLogger("trajgraph")

_FLUSH_INTERVAL_S = 0.05
_MAX_BATCH = 500


@dataclass
class _Batch:
    runs: list[Run] = field(default_factory=list)
    run_updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    model_calls: list[ModelCall] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs) + len(self.run_updates) + len(self.steps) + len(self.model_calls)


class Writer:
    """One background writer per store; `flush()` waits for everything queued so far."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"trajgraph-writer:{store.path}", daemon=True)
        self._thread.start()
        self.error: BaseException | None = None

    def put(self, kind: str, item: Any) -> None:
        self._queue.put((kind, item))

    def flush(self, timeout: float = 60.0) -> None:
        done = threading.Event()
        self._queue.put(("flush", done))
        if not done.wait(timeout):
            raise TimeoutError(f"trajgraph: store writer for {self.store.path} did not flush in {timeout}s")
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _loop(self) -> None:
        while True:
            kind, item = self._queue.get()
            batch, waiters = _Batch(), []
            self._add(batch, waiters, kind, item)
            # gather whatever else is already queued, up to a batch
            while len(batch) < _MAX_BATCH:
                try:
                    kind, item = self._queue.get(timeout=0 if waiters else _FLUSH_INTERVAL_S)
                except queue.Empty:
                    break
                self._add(batch, waiters, kind, item)
                if waiters:
                    break
            if len(batch):
                try:
                    self.store.write(
                        runs=batch.runs,
                        run_updates=batch.run_updates,
                        steps=batch.steps,
                        model_calls=batch.model_calls,
                    )
                except BaseException as exc:  # keep the thread alive; report on next flush
                    log.error("trajgraph: failed to write %d rows to %s: %s", len(batch), self.store.path, exc)
                    self.error = exc
            for w in waiters:
                w.set()

    @staticmethod
    def _add(batch: _Batch, waiters: list[threading.Event], kind: str, item: Any) -> None:
        if kind == "flush":
            waiters.append(item)
        elif kind == "run":
            batch.runs.append(item)
        elif kind == "run_update":
            batch.run_updates.append(item)
        elif kind == "step":
            batch.steps.append(item)
        elif kind == "model_call":
            batch.model_calls.append(item)


_WRITERS: "weakref.WeakKeyDictionary[Store, Writer]" = weakref.WeakKeyDictionary()
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
