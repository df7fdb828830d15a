"""The trajectory store: one contract (`Store`), SQLite by default.

- `sqlite.py`: the `Store` itself (WAL, busy timeout, foreign keys);
- `_schema.py`: tables, views and versioned migrations;
- `_rows.py`: how the trajectory dataclasses become rows and back (JSON as TEXT);
- `_json.py`: JSON encoding of LangGraph state values, never pickle;
- `_writer.py`: the write-behind buffer that recording and search write through;
- `_backends.py`: which class opens a URL (`postgresql://` is the Postgres adapter, found by name).
"""

from pathlib import Path

from trajgraph.store.redact import redact_secrets
from trajgraph.store.sqlite import Store


def open_store(target: str | Path, *, readonly: bool = False) -> Store:
    """The store at a path (SQLite; `sqlite:///path` too) or a URL (`postgresql://…`, extra `trajgraph[postgres]`)."""
    if isinstance(target, str) and target.startswith("sqlite:///"):
        target = target.removeprefix("sqlite:///")
    return Store(target, readonly=readonly)


__all__ = ["Store", "open_store", "redact_secrets"]
