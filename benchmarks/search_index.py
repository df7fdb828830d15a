"""What full-text search costs a store (issues 17, 20): write rate, file size and search latency on SQLite,
for three forms of the same store: without the index (triggers and FTS tables dropped), the v4 index (every
insert indexed by a trigger), and the v5 index (inserts indexed in bulk by the first search or close; the
first search pays for that and is timed apart).

Rounds are interleaved (indexed, plain, indexed, plain, ...) so load on this shared 2-core machine cancels in
the ratios; absolute numbers are noisy. Steps carry a multi-line observation of ~1 KB, as a text game's do.

Run: python benchmarks/search_index.py [--steps 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _table import emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trajgraph.store import Store
from trajgraph.store.dialect import SQLITE
from trajgraph.store.schema import SEARCH_INDEXES, SEARCH_MARKS
from trajgraph.trajectory import Run, Step

WORDS = ("door key lantern cellar north south east west open take brass wooden dusty attic kitchen gate iron "
         "table chair hook ladder trapdoor candle book shelf window garden fence path river bridge").split()


def _observation(rng: random.Random) -> str:
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(12))


def _plain(path: Path) -> None:
    """The same store without its search index (what a v3 store wrote)."""
    conn = sqlite3.connect(path)
    for index in SEARCH_INDEXES:
        for suffix in ("_ai", "_ad", "_au"):
            conn.execute(f"DROP TRIGGER IF EXISTS [{index.table}{suffix}]")
        conn.execute(f"DROP TABLE [{index.table}_fts]")
    conn.execute(f"DROP TABLE {SEARCH_MARKS}")
    conn.commit()
    conn.close()


def _per_insert(path: Path) -> None:
    """The v4 form: an insert trigger per table, and the mark past any rowid so the v5 catch-up never runs."""
    conn = sqlite3.connect(path)
    for index in SEARCH_INDEXES:
        for statement in SQLITE.search_index(index):
            if "_ai]" in statement:
                conn.execute(statement)
    conn.execute(f"UPDATE {SEARCH_MARKS} SET upto = 9223372036854775807")
    conn.commit()
    conn.close()


FORMS = ("without the index", "v4: indexed per insert", "v5: indexed at search")


def one(tmp: Path, name: str, form: str, n_steps: int, seed: int) -> dict[str, float]:
    path = tmp / f"{name}.db"
    Store(path).setup().close()
    if form == FORMS[0]:
        _plain(path)
    elif form == FORMS[1]:
        _per_insert(path)
    store = Store(path).setup()
    rng = random.Random(seed)
    steps = [Step(run_id="r", seq=i, node="env", update={"observation": _observation(rng), "reward": 0.0}) for i in range(n_steps)]
    store.write(runs=[Run(id="r", graph="g", started_at=1.0)])
    start = time.perf_counter()
    for i in range(0, n_steps, 50):  # the writer's batches are about this size on a text game
        store.write(steps=steps[i : i + 50])
    elapsed = time.perf_counter() - start
    first_ms = search_ms = float("nan")
    if form != FORMS[0]:
        t = time.perf_counter()
        store.search(f"{WORDS[0]} {WORDS[-1]}", limit=20)  # v5: indexes the rows written so far first
        first_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        for word in WORDS[1:11]:
            store.search(f"{word} {WORDS[-1]}", limit=20)
        search_ms = (time.perf_counter() - t) / 10 * 1000
    store.close()
    return {"steps_per_s": n_steps / elapsed, "mb": path.stat().st_size / 1e6, "first_ms": first_ms, "search_ms": search_ms}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {form: [] for form in FORMS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, form in enumerate(FORMS):
                results[form].append(one(Path(tmp), f"{r}-{i}", form, args.steps, seed=r))
    rows = []
    for form in FORMS:
        got = results[form]
        searched = form != FORMS[0]
        rows.append({"store": form,
                     "steps/s (median)": statistics.median(g["steps_per_s"] for g in got),
                     "file MB": statistics.median(g["mb"] for g in got),
                     "first search ms": statistics.median(g["first_ms"] for g in got) if searched else "-",
                     "search ms (2 words)": statistics.median(g["search_ms"] for g in got) if searched else "-"})
    plain = results[FORMS[0]]
    ratios = {form: [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(results[form], plain)] for form in FORMS[1:]}
    emit("search_index", f"SQLite full-text index: {args.steps} steps of ~1 KB observations, batches of 50, "
         f"{args.rounds} interleaved rounds; write rate over the store without the index: "
         + ", ".join(f"{form} {statistics.median(v):.2f}" for form, v in ratios.items()), rows,
         {"write_rate_ratio": ratios})


if __name__ == "__main__":
    main()
