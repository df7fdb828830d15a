"""`Store`: the store contract and every query it runs, written once for every backend.

A backend (`SQLiteStore` in sqlite.py, `PostgresStore` in the Postgres adapter)
brings its `Dialect` (trajgraph/store/dialect.py) and its connection handling:

- `setup()` / `close()`: open (create or migrate the schema) and release;
- `_query(sql, params)`: rows of one read, as dicts;
- `_transaction(work, n)`: run `work(tx)` in one write transaction (all or
  nothing), turning the driver's errors into one-line `StoreError`s;
- `_search_table(index, text, limit)`: full-text hits of one table.

Everything else (which rows a write becomes, the upserts, the process stamp of
running runs, every read, the liveness check) is here, so the two backends
cannot drift apart. Queries use `?`; the dialect rewrites them for its driver.

`Store(target)` opens the right backend: a path (or `sqlite:///path`) is SQLite,
a URL is the backend registered for its scheme (`postgresql://` is the Postgres
adapter, found through the `trajgraph.stores` entry points: trajgraph/store/backends.py).
"""

from __future__ import annotations

import json
import logging
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from trajgraph.errors import ConfigError, RunNotFoundError, StoreError
from trajgraph.store.dialect import Dialect
from trajgraph.store.liveness import died_message, gone, this_process
from trajgraph.store.redact import Redactor
from trajgraph.store.rows import JSON_FIELDS, decode, encode, escape_text, resolve_prompts, row_of, unreadable
from trajgraph.store.schema import KEYS, SEARCH_INDEXES, SearchIndex
from trajgraph.store.text import utf8_text
from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step, Trajectory

log = logging.getLogger("trajgraph")

_CHUNK = 500  # ids per `IN (...)`: well under SQLite's and PostgreSQL's parameter limits


def sql_limit(limit: int) -> int:
    """A LIMIT SQL can take: SQLite's integers stop at 2**63 - 1 (a larger one is 'datatype mismatch'),
    and anything past 2**62 means 'all of them' anyway."""
    return max(0, min(int(limit), 2**62))


class Tx(Protocol):
    """What a write transaction offers the shared write code."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


class UnstorableText(Exception):
    """A text value the database cannot hold as it is (a lone surrogate; a NUL on PostgreSQL): write it escaped."""


@dataclass(frozen=True)
class SearchHit:
    """Where a full-text search matched: a run's input/output/error, a step, a model call or a search node.

    `key` is the step's or model call's `seq`, or the search node's `id` (None for the run itself);
    `column` is the first indexed column that holds a searched word and `snippet` the text around it.
    """

    run_id: str
    table: str
    key: int | None
    column: str
    snippet: str
    rank: float = 0.0


class Store:
    """A trajgraph store. `Store("runs.db")` is SQLite (one file, WAL); `Store("postgresql://…")` a shared server.

    >>> store = Store("runs.db")          # created on first use
    >>> store.runs(status="failed")[:3]
    >>> store.search("locked door")       # full-text: what runs said and did

    Thread-safe; several processes may write at once.
    """

    dialect: ClassVar[Dialect]
    # the class a file path opens: SQLiteStore, set by store/sqlite.py (so this module never imports its subclass)
    file_backend: ClassVar[type[Store] | None] = None
    path: Any  # the file (a Path), or the URL without its password
    readonly: bool
    redact: Redactor | None
    _writer: Any  # the background writer of recorded runs (trajgraph/store/writer.py), once used
    # how long a write may wait for the database to come back (a busy file, a server restarting) before it fails
    write_deadline_s: float = 30.0

    def __new__(cls, path: str | Path = "trajgraph.db", *args: Any, **kwargs: Any) -> Store:
        """`Store(target)` is the backend for `target`; a backend class constructs itself."""
        if cls is Store:
            from trajgraph.store.backends import backend_class

            backend = backend_class(path) or Store.file_backend
            if backend is None:  # only if trajgraph.store.sqlite was never imported (trajgraph.store imports it)
                raise ConfigError("no file store backend loaded; import trajgraph.store")
            cls = backend
        return object.__new__(cls)

    # -- what a backend provides ---------------------------------------------------

    def setup(self) -> Store:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _transaction(self, work: Callable[[Tx], None], n: int) -> None:
        raise NotImplementedError

    def _search_table(self, index: SearchIndex, text: str, limit: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def index_for_search(self) -> int:
        """Bring the full-text index up to date; how many rows it took in. Only SQLite defers indexing
        (see SQLiteStore.index_for_search); PostgreSQL's index is kept by the database on every write."""
        return 0

    @property
    def db(self) -> Any:
        """SQLite's connection handle (`SQLiteStore.db`); other backends have none."""
        raise StoreError(f"{self.path}: a {type(self).__name__} has no SQLite handle; use the Store methods")

    def _storable(self, item: Any) -> Any:
        """`item` with the text its database cannot hold escaped (a marked change); see `UnstorableText`."""
        return escape_text(item)

    # -- shared ------------------------------------------------------------------------

    def __enter__(self) -> Store:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Wait until every row that recording has queued for this store is committed.

        Raises `StoreError` if rows could not be stored since the last flush (they are
        logged too, and their runs marked failed with the cause)."""
        if self._writer is not None:
            self._writer.flush()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """One read, after this program's own queued writes (a lost row is raised to its writer, not here)."""
        if self._writer is not None and self._writer.pending:
            self._writer.flush(raise_errors=False)
        # a lone surrogate in a filter matches the store's escaped text (trajgraph/store/text.py)
        params = [utf8_text(p) if type(p) is str else p for p in params]
        return self._query(sql, params)

    def mark_interrupted(self) -> list[str]:
        """Mark `running` runs whose process is gone (trajgraph/store/liveness.py) as interrupted; returns
        their ids. Backends run it on a writable open; reads report such runs as interrupted anyway."""
        dead = []
        for row in self._query("SELECT id, metadata FROM runs WHERE status = 'running'"):
            try:
                process = json.loads(row["metadata"] or "{}").get("process")
            except (ValueError, AttributeError):
                continue
            if gone(process):
                dead.append((row["id"], {"status": "interrupted", "error": died_message(process)}))
        if dead:
            try:
                self.write(run_updates=dead)
            except StoreError:  # a store we cannot write: reads still say interrupted
                pass
        return [run_id for run_id, _ in dead]

    # -- writes ------------------------------------------------------------------------

    def write(
        self,
        *,
        runs: Sequence[Run] = (),
        run_updates: Sequence[tuple[str, dict[str, Any]]] = (),
        steps: Sequence[Step] = (),
        model_calls: Sequence[ModelCall] = (),
        search_nodes: Sequence[SearchNode] = (),
        pairs: Sequence[PreferencePair] = (),
    ) -> None:
        """Write a batch in one transaction: all of it lands or none of it does.

        Raises `StoreError` naming the database's own cause (a full disk, a
        read-only file, a row of a run that is not in the store, a server that
        stayed away past `write_deadline_s`), never a raw driver error. Text the
        database cannot hold (a lone surrogate from `os.fsdecode`; a NUL on
        PostgreSQL) is written escaped, a marked change.
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        batch = (runs, run_updates, steps, model_calls, search_nodes, pairs)
        n = sum(len(items) for items in batch)
        if not n:
            return
        try:
            self._transaction(self._work(*batch), n)
        except UnstorableText:
            escaped = [[self._storable(i) for i in items] for items in batch]
            try:
                self._transaction(self._work(*escaped), n)
            except UnstorableText as exc:
                raise StoreError(f"{self.path}: could not write {n} row(s) ({exc})") from None

    def _work(
        self,
        runs: Sequence[Run],
        run_updates: Sequence[tuple[str, dict[str, Any]]],
        steps: Sequence[Step],
        model_calls: Sequence[ModelCall],
        search_nodes: Sequence[SearchNode],
        pairs: Sequence[PreferencePair],
    ) -> Callable[[Tx], None]:
        """The batch as statements, every row encoded (once, before the transaction takes any lock)."""
        memo: dict[int, Any] = {}  # messages repeated across this batch's rows are encoded once
        checked: dict[int, Any] = {}  # ... and pre-checked for redaction once
        redact = self.redact
        statements: list[tuple[str, list[Any]]] = []
        if runs:
            runs = [_stamped_run(r) for r in runs]
            statements.append(_upsert("runs", [encode("runs", r.__dict__, memo, redact, checked) for r in runs]))  # encode copies
            statements.extend(_tag_statements({r.id: r.tags for r in runs}))
        restamp: dict[str, str] = {}  # run id -> its new status, where the update leaves the stored metadata as it is
        for run_id, fields in run_updates:
            if not fields:
                continue
            if "status" in fields:
                if "metadata" in fields:
                    fields = {**fields, "metadata": _stamped(fields["metadata"], fields["status"])}
                else:
                    restamp[run_id] = fields["status"]
            row = encode("runs", dict(fields), memo, redact, checked)
            sets = ", ".join(f'"{k}" = ?' for k in row)
            statements.append((f"UPDATE runs SET {sets} WHERE id = ?", [[*row.values(), run_id]]))
            if "tags" in fields:
                statements.extend(_tag_statements({run_id: fields["tags"]}))
        for table, items in (("steps", steps), ("model_calls", model_calls), ("search_nodes", search_nodes)):
            if items:
                statements.append(_upsert(table, [encode(table, i.__dict__, memo, redact, checked) for i in items]))
        if pairs:
            rows = [encode("pairs", row_of(p), memo, redact) for p in pairs]
            for r in rows:
                r.pop("id", None)  # the database numbers them
            statements.append(_insert("pairs", rows))
        dialect = self.dialect

        def work(tx: Tx) -> None:
            for sql, params in statements:
                tx.executemany(dialect.sql(sql), params)
            if restamp:
                _restamp(tx, dialect, restamp)

        return work

    def add_run(self, run: Run) -> None:
        self.write(runs=[run])

    def update_run(self, run_id: str, **fields: Any) -> None:
        self.write(run_updates=[(run_id, fields)])

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete these runs with their steps, calls, nodes, pairs and tags (ON DELETE CASCADE), in one
        transaction; children before parents in `run_ids` (a kept run naming one as parent fails the batch)."""
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        ids = list(run_ids)
        deleted = [0]
        dialect = self.dialect

        def work(tx: Tx) -> None:
            for chunk in _chunks(ids):
                rows = tx.query(dialect.sql(f"SELECT COUNT(*) AS n FROM runs WHERE id IN ({_marks(chunk)})"), chunk)
                deleted[0] += int(rows[0]["n"])
                tx.executemany(dialect.sql(f"DELETE FROM runs WHERE id IN ({_marks(chunk)})"), [chunk])

        if ids:
            self._transaction(work, len(ids))
        return deleted[0]

    # -- reads -------------------------------------------------------------------------

    def runs(
        self,
        *,
        graph: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        kind: str | None = None,
        task: str | None = None,
        parent_id: str | None = None,
        thread_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = True,
        ids: Sequence[str] | None = None,
    ) -> list[Run]:
        """Runs matching every filter given, newest first (ties by id, in byte order on every backend).
        `ids` keeps only those runs (as `search()` finds them)."""
        where: list[str] = []
        params: list[Any] = []
        for col, val in (("graph", graph), ("status", status), ("kind", kind), ("task", task), ("parent_id", parent_id), ("thread_id", thread_id)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if tag is not None:
            where.append("id IN (SELECT run_id FROM run_tags WHERE tag = ?)")
            params.append(tag)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        if ids is not None:
            if not ids:
                return []
            if len(ids) > _CHUNK:  # filter the rest in Python rather than bind thousands of parameters
                keep = set(ids)
                return [r for r in self.runs(graph=graph, status=status, tag=tag, kind=kind, task=task, parent_id=parent_id,
                                             thread_id=thread_id, since=since, until=until, newest_first=newest_first)
                        if r.id in keep][:limit]
            where.append(f"id IN ({_marks(ids)})")
            params.extend(ids)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at " + ("DESC" if newest_first else "ASC") + f", id COLLATE {self.dialect.bytewise}"
        if limit is not None:
            sql += f" LIMIT {sql_limit(limit)}"
        return [self._run(r) for r in self._read(self.dialect.sql(sql), params)]

    def run(self, run_id: str) -> Run:
        """One run by id, or by a unique prefix of its id (as the CLI accepts)."""
        rows = self._read(self.dialect.sql("SELECT * FROM runs WHERE id = ?"), [run_id])
        if not rows and run_id:
            # a literal prefix: LIKE would read `_` and `%` in it as wildcards
            rows = self._read(self.dialect.sql("SELECT * FROM runs WHERE substr(id, 1, ?) = ? LIMIT 2"), [len(run_id), run_id])
            if len(rows) > 1:
                raise RunNotFoundError(f"run id prefix {run_id!r} matches several runs in {self.path}; give more characters")
        if not rows:
            raise RunNotFoundError(f"no run {run_id!r} in {self.path}; list runs with `trajgraph runs`")
        return self._run(rows[0])

    def steps(self, run_id: str) -> list[Step]:
        rows = self._read(self.dialect.sql("SELECT * FROM steps WHERE run_id = ? ORDER BY seq"), [run_id])
        return [Step(**self._decode("steps", r)) for r in rows]

    def iter_steps(self, run_ids: Iterable[str] | None = None) -> Iterator[Step]:
        """Every step (of the given runs), in run then seq order."""
        if run_ids is None:
            for r in self._read(f"SELECT * FROM steps ORDER BY run_id COLLATE {self.dialect.bytewise}, seq"):
                yield Step(**self._decode("steps", r))
            return
        for run_id in run_ids:
            yield from self.steps(run_id)

    def model_calls(self, run_id: str | None = None) -> list[ModelCall]:
        if run_id is None:
            rows = self._read(f"SELECT * FROM model_calls ORDER BY run_id COLLATE {self.dialect.bytewise}, seq")
        else:
            rows = self._read(self.dialect.sql("SELECT * FROM model_calls WHERE run_id = ? ORDER BY seq"), [run_id])
        return resolve_prompts([ModelCall(**self._decode("model_calls", r)) for r in rows])

    def search_nodes(self, run_id: str) -> list[SearchNode]:
        rows = self._read(self.dialect.sql("SELECT * FROM search_nodes WHERE run_id = ? ORDER BY id"), [run_id])
        return [SearchNode(**self._decode("search_nodes", r)) for r in rows]

    def pairs(self, *, run_id: str | None = None, source: str | None = None) -> list[PreferencePair]:
        where, params = [], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if source is not None:
            where.append("source = ?")
            params.append(source)
        sql = "SELECT * FROM pairs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        out = []
        for r in self._read(self.dialect.sql(sql), params):
            r.pop("id", None)
            out.append(PreferencePair(**self._decode("pairs", r)))
        return out

    def trajectory(self, run_id: str) -> Trajectory:
        run = self.run(run_id)
        return Trajectory(run=run, steps=tuple(self.steps(run.id)), model_calls=tuple(self.model_calls(run.id)))

    def next_seq(self, run_id: str, table: str = "steps") -> int:
        """The next free sequence number of a run's steps (or model_calls), for resuming it."""
        if table not in ("steps", "model_calls"):
            raise StoreError(f"next_seq: table must be steps or model_calls, not {table!r}")
        rows = self._read(self.dialect.sql(f"SELECT COALESCE(MAX(seq) + 1, 0) AS n FROM {table} WHERE run_id = ?"), [run_id])
        return int(rows[0]["n"])

    def step_counts(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Number of steps of each run, in one query per 500 runs (for run listings)."""
        out: dict[str, int] = {}
        for chunk in _chunks(list(run_ids)):
            sql = f"SELECT run_id, COUNT(*) AS n FROM steps WHERE run_id IN ({_marks(chunk)}) GROUP BY run_id"
            out.update({r["run_id"]: int(r["n"]) for r in self._read(self.dialect.sql(sql), chunk)})
        return out

    def count(self, table: str) -> int:
        if table not in JSON_FIELDS:
            raise StoreError(f"unknown table {table!r}; one of {sorted(JSON_FIELDS)}")
        return int(self._read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])

    def search(self, text: str, *, limit: int = 100) -> list[SearchHit]:
        """Full-text search over what runs were given, said and did: run inputs, outputs and errors, step
        updates (observations) and actions, model messages and responses, search nodes. Every word must
        match (case-insensitive); best matches first, at most `limit`. Built on SQLite FTS5 (in
        sqlite-utils' layout) or PostgreSQL's tsvector, kept in sync on every write."""
        words = _words(text)
        if not words:
            raise StoreError(f"search text {text!r} has no word to look for; give one or more words")
        if self._writer is not None and self._writer.pending:
            self._writer.flush(raise_errors=False)
        hits: list[SearchHit] = []
        for index in SEARCH_INDEXES:
            for row in self._search_table(index, " ".join(words), limit):
                column, snippet = _snippet(row, index.columns, words)
                key = row.get("seq", row.get("id")) if index.table != "runs" else None
                hits.append(SearchHit(run_id=str(row["run_id"] if index.table != "runs" else row["id"]), table=index.table,
                                      key=None if key is None else int(key), column=column, snippet=snippet,
                                      rank=float(row.get("rank") or 0.0)))
        hits.sort(key=lambda h: h.rank)  # both backends give lower = better
        return hits[:limit]

    def _decode(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        """Decode JSON columns; a value that is not JSON (say, a pickle) is marked unreadable, never run."""
        out = decode(table, row)
        for f in JSON_FIELDS[table]:
            reason = unreadable(out.get(f))
            if reason is not None:
                where = ", ".join(f"{k}={row[k]!r}" for k in ("run_id", "id", "seq") if isinstance(row.get(k), (str, int)))
                log.warning("trajgraph: %s: %s row (%s): %s", self.path, table, where, reason)
        return out

    def _run(self, row: dict[str, Any]) -> Run:
        data = self._decode("runs", row)
        data["tags"] = tuple(data.get("tags") or ())
        data["metadata"] = data.get("metadata") or {}
        if data.get("status") == "running" and isinstance(data["metadata"], dict) and gone(data["metadata"].get("process")):
            data["status"], data["error"] = "interrupted", died_message(data["metadata"]["process"])
        return Run(**data)


# -- the process stamp ------------------------------------------------------------------


def _stamped(metadata: Any, status: Any) -> Any:
    """Metadata as a run of `status` keeps it: `running` names this process (so its death can be told),
    `interrupted` keeps the process it names (the one that died), any other end drops it."""
    if not isinstance(metadata, dict):
        return metadata
    if status == "running":
        return {**metadata, "process": this_process()}
    if status != "interrupted" and "process" in metadata:
        return {k: v for k, v in metadata.items() if k != "process"}
    return metadata


def _stamped_run(run: Run) -> Run:
    metadata = _stamped(run.metadata or {}, run.status)
    return run if metadata is run.metadata else run.replace(metadata=metadata)


def _restamp(tx: Tx, dialect: Dialect, status: dict[str, str]) -> None:
    """The process stamp of runs whose status changed by an update that left their metadata alone:
    read back (row-locked), stamped as `_stamped` says, written when it changed."""
    ids = list(status)
    for chunk in _chunks(ids):
        rows = tx.query(dialect.sql(f"SELECT id, metadata FROM runs WHERE id IN ({_marks(chunk)})" + dialect.lock_rows), chunk)
        changed = []
        for row in rows:
            try:
                metadata = json.loads(row["metadata"] or "{}")
            except ValueError:
                continue
            stamped = _stamped(metadata, status[row["id"]])
            if stamped is not metadata:
                changed.append([_json_text(stamped), row["id"]])
        if changed:
            tx.executemany(dialect.sql("UPDATE runs SET metadata = ? WHERE id = ?"), changed)


def _json_text(value: Any) -> str:
    """Stored JSON (read back with json.loads) as compact text again; lone surrogates stay escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))


# -- statements -------------------------------------------------------------------------


def _insert(table: str, rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    cols = list(rows[0])
    names = ", ".join(f'"{c}"' for c in cols)
    values = operator.itemgetter(*cols) if len(cols) > 1 else (lambda r: (r[cols[0]],))
    return f'INSERT INTO {table} ({names}) VALUES ({", ".join("?" * len(cols))})', [values(r) for r in rows]


def _upsert(table: str, rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """INSERT ... ON CONFLICT DO UPDATE (not a replace: that deletes the old row, and ON DELETE CASCADE its children)."""
    sql, params = _insert(table, rows)
    keys = KEYS[table]
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in rows[0] if c not in keys)
    return f'{sql} ON CONFLICT ({", ".join(keys)}) DO UPDATE SET {sets}', params


def _tag_statements(tags: dict[str, Any]) -> list[tuple[str, list[list[Any]]]]:
    """run_tags rows for each run id: exactly its given tags (the table the `--tag` filter reads)."""
    out: list[tuple[str, list[list[Any]]]] = [("DELETE FROM run_tags WHERE run_id = ?", [[run_id] for run_id in tags])]
    rows = [[run_id, t] for run_id, ts in tags.items() for t in dict.fromkeys(ts or ())]
    if rows:
        out.append(("INSERT INTO run_tags (run_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING", rows))
    return out


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


# -- search -----------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    """The words of a search: letters and digits (what both backends' tokenizers index)."""
    return _WORD.findall(text)


def _snippet(row: dict[str, Any], columns: Sequence[str], words: Sequence[str], width: int = 120) -> tuple[str, str]:
    """The first column holding a searched word, and the text around it (JSON escapes of line breaks as spaces)."""
    lowered = [w.lower() for w in words]
    for column in columns:
        value = row.get(column)
        if not isinstance(value, str):
            continue
        text = " ".join(value.replace("\\n", " ").replace("\\t", " ").replace("\\r", " ").split())
        low = text.lower()
        at = min((i for i in (low.find(w) for w in lowered) if i >= 0), default=-1)
        if at >= 0:
            start = max(0, at - width // 3)
            piece = text[start : start + width]
            return column, ("…" if start else "") + piece + ("…" if start + width < len(text) else "")
    return columns[0], ""


__all__ = ["Store", "SearchHit", "Tx", "UnstorableText", "sql_limit"]
