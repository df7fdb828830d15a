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

from trajgraph.store.schema import SEARCH_MARKS, DeferredIndexing, Migration, SearchIndex


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

    def deferred_indexing(self, entry: DeferredIndexing) -> list[str]:
        """Statements that take the index of `entry.index` off the insert path; none where the database
        maintains it (PostgreSQL's expression index)."""
        return []

    def statements(self, entry: Migration) -> list[str]:
        """One migration entry as statements."""
        if isinstance(entry, SearchIndex):
            return self.search_index(entry)
        if isinstance(entry, DeferredIndexing):
            return self.deferred_indexing(entry)
        return self.render(entry)


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
    external content, as sqlite-utils' `enable_fts()` makes it, so `sqlite-utils
    search` and Datasette find and use it. Two differences: the index reads JSON
    text with its `\\n`/`\\r`/`\\t` escapes as spaces (otherwise the word after a
    line break of an observation would be indexed glued to an `n`), so rebuild such
    an index with these expressions, not with FTS5's 'rebuild' command; and since
    schema v5 new rows are indexed in bulk when the store is searched or closed
    (`catch_up`), not one by one as they are inserted, which halved write speed.
    Triggers keep the index exact when an indexed row is updated or deleted.
    """

    def search_index(self, index: SearchIndex) -> list[str]:
        table, fts = index.table, f"{index.table}_fts"
        cols, rows = _columns(index), _texts(index)
        delete, insert = _index_edits(index)
        return [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS [{fts}] USING FTS5 ({cols}, content=[{table}])",
            f"INSERT INTO [{fts}] (rowid, {cols}) SELECT rowid, {rows} FROM [{table}]",
            f"CREATE TRIGGER IF NOT EXISTS [{table}_ai] AFTER INSERT ON [{table}] BEGIN {insert}; END",
            f"CREATE TRIGGER IF NOT EXISTS [{table}_ad] AFTER DELETE ON [{table}] BEGIN {delete}; END",
            f"CREATE TRIGGER IF NOT EXISTS [{table}_au] AFTER UPDATE ON [{table}] BEGIN {delete}; {insert}; END",
        ]

    def deferred_indexing(self, entry: DeferredIndexing) -> list[str]:
        """Drop the insert trigger; mark the index complete up to today's last row; touch the index on
        delete/update only for rows it holds (the mark), and lower the mark when the last rows go, so
        a rowid SQLite hands out again is indexed again."""
        table, mark = entry.index.table, _mark(entry.index.table)
        delete, insert = _index_edits(entry.index)
        lower = (f"UPDATE {SEARCH_MARKS} SET upto = min(upto, (SELECT coalesce(max(rowid), 0) FROM [{table}])) "
                 f"WHERE tbl = '{table}'")
        return [
            f"CREATE TABLE IF NOT EXISTS {SEARCH_MARKS} (tbl TEXT PRIMARY KEY, upto INTEGER NOT NULL)",
            f"INSERT OR REPLACE INTO {SEARCH_MARKS} VALUES ('{table}', (SELECT coalesce(max(rowid), 0) FROM [{table}]))",
            f"DROP TRIGGER IF EXISTS [{table}_ai]",
            f"DROP TRIGGER IF EXISTS [{table}_ad]",
            f"DROP TRIGGER IF EXISTS [{table}_au]",
            f"CREATE TRIGGER [{table}_ad] AFTER DELETE ON [{table}] WHEN old.rowid <= {mark} BEGIN {delete}; {lower}; END",
            f"CREATE TRIGGER [{table}_au] AFTER UPDATE ON [{table}] WHEN old.rowid <= {mark} BEGIN {delete}; {insert}; END",
        ]

    def pending(self, index: SearchIndex) -> str:
        """The rowid above which rows of `index.table` are not indexed yet, and the table's last rowid."""
        return (f"SELECT {_mark(index.table)} AS upto, (SELECT coalesce(max(rowid), 0) FROM [{index.table}]) AS last")

    def catch_up(self, index: SearchIndex) -> list[str]:
        """Index the rows above the mark in one statement, then move the mark (run both in one transaction)."""
        table, fts = index.table, f"{index.table}_fts"
        cols, rows = _columns(index), _texts(index)
        return [
            f"INSERT INTO [{fts}] (rowid, {cols}) SELECT rowid, {rows} FROM [{table}] WHERE rowid > {_mark(table)}",
            f"UPDATE {SEARCH_MARKS} SET upto = (SELECT coalesce(max(rowid), 0) FROM [{table}]) WHERE tbl = '{table}'",
        ]

    def tail_search(self, index: SearchIndex, upto: int, keys: list[str]) -> tuple[list[str], str]:
        """For a store opened read-only: the rows above the mark in a temporary FTS5 table, and the query
        that searches it (parameters: the FTS query, the limit), so a search sees every row without writing."""
        table, tail = index.table, f"_trajgraph_{index.table}_tail"
        cols, rows = _columns(index), _texts(index)
        picked = ", ".join(f'[{table}]."{c}"' for c in [*keys, *index.columns])
        setup = [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.[{tail}] USING FTS5 ({cols})",
            f"DELETE FROM temp.[{tail}]",
            f"INSERT INTO temp.[{tail}] (rowid, {cols}) SELECT rowid, {rows} FROM main.[{table}] WHERE rowid > {int(upto)}",
        ]
        query = (f"SELECT {picked}, bm25([{tail}]) AS rank FROM [{tail}] JOIN main.[{table}] "
                 f"ON main.[{table}].rowid = [{tail}].rowid WHERE [{tail}] MATCH ? ORDER BY rank LIMIT ?")
        return setup, query


def _columns(index: SearchIndex) -> str:
    """The indexed columns, as the FTS table names them."""
    return ", ".join(f'"{c}"' for c in index.columns)


def _texts(index: SearchIndex, row: str = "") -> str:
    """The indexed columns' text as the index reads it (JSON escapes as spaces), of `row` ("new.", "old.")."""
    return ", ".join(_clean(f'{row}"{c}"') for c in index.columns)


def _index_edits(index: SearchIndex) -> tuple[str, str]:
    """The trigger statements that take a row's old text out of the index and put its new text in."""
    fts, cols, new, old = f"{index.table}_fts", _columns(index), _texts(index, "new."), _texts(index, "old.")
    return (f"INSERT INTO [{fts}] ([{fts}], rowid, {cols}) VALUES ('delete', old.rowid, {old})",
            f"INSERT INTO [{fts}] (rowid, {cols}) VALUES (new.rowid, {new})")


def _mark(table: str) -> str:
    """SQL for the highest rowid of `table` its full-text index holds."""
    return f"(SELECT upto FROM {SEARCH_MARKS} WHERE tbl = '{table}')"


SQLITE = SQLiteDialect("sqlite")

__all__ = ["Dialect", "SQLiteDialect", "SQLITE"]
