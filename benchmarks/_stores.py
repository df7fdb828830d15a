"""Store copies for the learning benchmarks: a finished run's store copied, then cut back to the runs a
measurement should learn from (learning_dagger.py, demo_learning.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def copy_store(src: str | Path, dst: str | Path) -> None:
    """A consistent copy of the SQLite store at `src` (its write-ahead log included)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()


def prune(path: str | Path, drop: Any) -> int:
    """Delete from the store at `path` every run for which `drop(run)` holds, and the runs under it
    (children first); the number of runs deleted."""
    from trajgraph.store import Store
    from trajgraph.store.transfer import lineages

    db = Store(path)
    try:
        return db.delete_runs([r.id for r in reversed(lineages(db.runs(), drop))])
    finally:
        db.close()
