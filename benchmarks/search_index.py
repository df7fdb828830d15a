"""What full-text search costs a store (issue 17): write rate, file size and search latency on SQLite,
with the v4 search index (FTS5 + triggers) against the same store with the triggers and FTS tables dropped.

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
from trajgraph.store.schema import SEARCH_INDEXES
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
            conn.execute(f"DROP TRIGGER [{index.table}{suffix}]")
        conn.execute(f"DROP TABLE [{index.table}_fts]")
    conn.commit()
    conn.close()


def one(tmp: Path, name: str, indexed: bool, n_steps: int, seed: int) -> dict[str, float]:
    path = tmp / f"{name}.db"
    Store(path).setup().close()
    if not indexed:
        _plain(path)
    store = Store(path).setup()
    rng = random.Random(seed)
    steps = [Step(run_id="r", seq=i, node="env", update={"observation": _observation(rng), "reward": 0.0}) for i in range(n_steps)]
    store.write(runs=[Run(id="r", graph="g", started_at=1.0)])
    start = time.perf_counter()
    for i in range(0, n_steps, 50):  # the writer's batches are about this size on a text game
        store.write(steps=steps[i : i + 50])
    elapsed = time.perf_counter() - start
    search_ms = float("nan")
    if indexed:
        t = time.perf_counter()
        for word in WORDS[:10]:
            store.search(f"{word} {WORDS[-1]}", limit=20)
        search_ms = (time.perf_counter() - t) / 10 * 1000
    store.close()
    return {"steps_per_s": n_steps / elapsed, "mb": path.stat().st_size / 1e6, "search_ms": search_ms}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for indexed in (True, False):
                results[indexed].append(one(Path(tmp), f"{r}-{indexed}", indexed, args.steps, seed=r))
    rows = []
    for indexed in (False, True):
        got = results[indexed]
        rows.append({"store": "v4, search index" if indexed else "without the index",
                     "steps/s (median)": statistics.median(g["steps_per_s"] for g in got),
                     "file MB": statistics.median(g["mb"] for g in got),
                     "search ms (2 words)": statistics.median(g["search_ms"] for g in got) if indexed else "-"})
    ratio = [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(results[True], results[False])]
    size = [a["mb"] / b["mb"] for a, b in zip(results[True], results[False])]
    emit("search_index", f"SQLite full-text index: {args.steps} steps of ~1 KB observations, batches of 50, "
         f"{args.rounds} interleaved rounds; write rate with/without = {statistics.median(ratio):.2f}, "
         f"size with/without = {statistics.median(size):.2f}", rows,
         {"write_rate_ratio": ratio, "size_ratio": size})


if __name__ == "__main__":
    main()
