"""The trajectory store: one contract (`Store`), SQLite by default.

- `sqlite.py`: the `Store` itself (WAL, busy timeout, foreign keys);
- `_schema.py`: tables, views and versioned migrations;
- `_rows.py`: how the trajectory dataclasses become rows and back (JSON as TEXT);
- `_json.py`: JSON encoding of LangGraph state values, never pickle;
- `_writer.py`: the write-behind buffer that recording and search write through.
"""

from trajgraph.store.sqlite import Store

__all__ = ["Store"]
