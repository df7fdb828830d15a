"""What differs between the SQL of two store backends, in one small object.

The store's queries are written once (trajgraph/store/base.py), with `?` for
parameters, and its schema once (trajgraph/store/schema.py), with `{REAL}`-style
tokens. A `Dialect` turns both into one database's SQL: its parameter style, its
column types and "create if missing" forms, the collation that orders text by
bytes, how a transaction locks the rows it reads back, and its full-text index.
SQLite's dialect lives here; PostgreSQL's lives with its adapter
(trajgraph.adapters.postgres), built on the same base.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from trajgraph.store.schema import SearchIndex


@dataclass(frozen=True)
class Dialect:
    """The SQL words of one database. Subclasses add the full-text index (`search_index`, `search_sql`)."""

    name: str
    param: str = "?"  # the driver's placeholder
    REAL: str = "REAL"
    SERIAL: str = "INTEGER PRIMARY KEY AUTOINCREMENT"  # an id the database assigns
    VIEW: str = "CREATE VIEW IF NOT EXISTS"
    ADD_COLUMN: str = "ADD COLUMN"
    bytewise: str = "BINARY"  # the collation that orders text by bytes (ids sort alike everywhere)
    lock_rows: str = ""  # appended to a SELECT that is read, then written back, inside a transaction

    def sql(self, text: str) -> str:
        """A query written with `?` placeholders, in this dialect's parameter style."""
        return _placeholders(text, self.param)

    def render(self, ddl: str) -> list[str]:
        """Schema SQL (trajgraph/store/schema.py) as this dialect's statements."""
        text = ddl.format(REAL=self.REAL, SERIAL=self.SERIAL, VIEW=self.VIEW, ADD_COLUMN=self.ADD_COLUMN)
        return [s.strip() for s in text.split(";\n") if s.strip()]

    def search_index(self, index: SearchIndex) -> list[str]:
        """Statements that create the full-text index of `index.table` (and fill it from the rows there)."""
        raise NotImplementedError

    def statements(self, entry: str | SearchIndex) -> list[str]:
        """One migration entry as statements."""
        return self.search_index(entry) if isinstance(entry, SearchIndex) else self.render(entry)


@functools.lru_cache(maxsize=512)
def _placeholders(text: str, param: str) -> str:
    if param == "?":
        return text
    return text.replace("%", "%%").replace("?", param)


def _clean(expr: str) -> str:
    """JSON text with its \\n, \\r and \\t escapes as spaces, so the word after a line break is a word of its own."""
    return f"replace(replace(replace({expr}, '\\n', ' '), '\\r', ' '), '\\t', ' ')"


class SQLiteDialect(Dialect):
    """SQLite: `?`, REAL, AUTOINCREMENT; full-text search through FTS5 in sqlite-utils' layout.

    Each indexed table gets a `<table>_fts` FTS5 table with the table as its
    external content and `<table>_ai/_ad/_au` triggers, as sqlite-utils'
    `enable_fts(create_triggers=True)` makes them, so `sqlite-utils search` and
    Datasette find and use them. One difference: the triggers index JSON text with
    its `\\n`/`\\r`/`\\t` escapes read as spaces (otherwise the word after a line
    break of an observation would be indexed glued to an `n`). So rebuild such an
    index with these triggers' expressions, not with FTS5's 'rebuild' command.
    """

    def search_index(self, index: SearchIndex) -> list[str]:
        table, fts = index.table, f"{index.table}_fts"
        cols = ", ".join(f'"{c}"' for c in index.columns)
        new = ", ".join(_clean(f'new."{c}"') for c in index.columns)
        old = ", ".join(_clean(f'old."{c}"') for c in index.columns)
        rows = ", ".join(_clean(f'"{c}"') for c in index.columns)
        delete = f"INSERT INTO [{fts}] ([{fts}], rowid, {cols}) VALUES ('delete', old.rowid, {old})"
        insert = f"INSERT INTO [{fts}] (rowid, {cols}) VALUES (new.rowid, {new})"
        return [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS [{fts}] USING FTS5 ({cols}, content=[{table}])",
            f"INSERT INTO [{fts}] (rowid, {cols}) SELECT rowid, {rows} FROM [{table}]",
            f"CREATE TRIGGER IF NOT EXISTS [{table}_ai] AFTER INSERT ON [{table}] BEGIN {insert}; END",
            f"CREATE TRIGGER IF NOT EXISTS [{table}_ad] AFTER DELETE ON [{table}] BEGIN {delete}; END",
            f"CREATE TRIGGER IF NOT EXISTS [{table}_au] AFTER UPDATE ON [{table}] BEGIN {delete}; {insert}; END",
        ]


SQLITE = SQLiteDialect("sqlite")

__all__ = ["Dialect", "SQLiteDialect", "SQLITE"]
