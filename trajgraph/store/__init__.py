"""The trajectory store: one contract (`Store`), SQLite by default, PostgreSQL through its adapter.

- `base.py`: `Store`, every query it runs (written once), and `Store(target)` choosing the backend;
- `sqlite.py`: `SQLiteStore`, the default (one file, WAL, busy timeout, foreign keys);
- `dialect.py`: what differs between backends' SQL (placeholders, types, full-text index);
- `schema.py`: tables, views, keys, search indexes and versioned migrations, once for every backend;
- `rows.py`: how the trajectory dataclasses become rows and back (JSON as TEXT);
- `json.py`: JSON encoding of LangGraph state values, never pickle;
- `writer.py`: the write-behind buffer that recording and search write through;
- `redact.py`: credentials never stored; `liveness.py`: which process writes a running run, and whether it lives;
- `backends.py`: which class opens a URL (registered under the `trajgraph.stores` entry points).
"""

from pathlib import Path

from trajgraph.store.backends import mask_url
from trajgraph.store.base import SearchHit, Store
from trajgraph.store.redact import redact_secrets
from trajgraph.store.sqlite import SQLiteStore


def open_store(target: str | Path, *, readonly: bool = False) -> Store:
    """The store at a path (SQLite; `sqlite:///path` too) or a URL (`postgresql://…`, extra `trajgraph[postgres]`)."""
    if isinstance(target, str) and target.startswith("sqlite:///"):
        target = target.removeprefix("sqlite:///")
    return Store(target, readonly=readonly)


__all__ = ["Store", "SQLiteStore", "SearchHit", "open_store", "mask_url", "redact_secrets"]
