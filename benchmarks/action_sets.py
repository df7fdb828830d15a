"""Large action sets: the MiniLM head's decision and fit time against the number of admissible actions.

For 100, 1,000 and 3,000 distinct actions (generated text-game commands): the first
decision (every action text encoded once, in batches), a decision once the texts are
cached (median of `--repeat`), a decision with top-k pre-filtering by the base policy
(k=50), and one head fit on `--decisions` decisions over that many actions (`--epochs`).
Target (issue 22): one decision over 1,000 actions <= 50 ms on 2 cores once texts are cached.
The machine is shared: the load average is recorded with the numbers.
Run: python benchmarks/action_sets.py [--sizes 100 1000 3000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from typing import Any

from _table import emit

import trajgraph.testing  # noqa: F401  (offline defaults)
from trajgraph.learn.data import Decision
from trajgraph.learn.head_fit import FitConfig, fit
from trajgraph.policies import MiniLM
from trajgraph.policies.head import trainable_policy

VERBS = ["take", "open", "close", "examine", "put", "drop", "unlock", "go to", "insert", "eat", "push", "read"]
THINGS = ["key", "box", "chest", "door", "lamp", "book", "apple", "coin", "map", "knife", "rope", "bottle", "shelf", "table",
          "drawer", "safe", "letter", "ring", "cup", "candle"]
COLORS = ["red", "blue", "green", "old", "small", "heavy", "rusty", "golden", "wooden", "broken", "dusty", "shiny", "tiny",
          "large", "dark"]


def actions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        out[f"{rng.choice(VERBS)} the {rng.choice(COLORS)} {rng.choice(THINGS)}"] = None
    return list(out)


def state(n: int, seed: int) -> dict[str, Any]:
    acts = actions(n, seed)
    return {"task": f"Find the {acts[3].split(' ', 2)[-1]}. Then {acts[7]}.", "observation": "You are in a cluttered attic.",
            "actions": acts, "history": [{"action": acts[1], "observation": "Nothing happens."}]}


def timed(fn: Any, arg: Any, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 3000])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--decisions", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        head = trainable_policy(temperature=0.0, encoder=MiniLM())  # a fresh encoder: an empty text cache
        filtered = trainable_policy(temperature=0.0, top_k=50, encoder=head.encoder)
        s = {**state(n, n), "history": []}
        cold = timed(head, s)  # every text encoded once (batches of new texts)
        warm = timed(head, s, args.repeat)
        top = timed(filtered, s, args.repeat)
        ds = []
        for i in range(args.decisions):
            st = state(n, n + i)
            ds.append(Decision(st, st["actions"][i % 5], f"r{i}", f"t{i % 4}"))
        started = time.perf_counter()
        report = fit(head, ds, [], FitConfig(epochs=args.epochs, min_steps=args.epochs, val_fraction=0.0))
        fit_s = time.perf_counter() - started
        rows.append({"actions": n, "first decision s": cold, "cached decision ms": warm * 1000, "top-50 decision ms": top * 1000,
                     "fit s": fit_s, "fit epochs": report.epochs_run, "fit decisions": args.decisions})
        print(rows[-1], flush=True)
    emit("action_sets", "MiniLM head over large action sets", rows,
         {"loadavg": os.getloadavg(), "torch_threads": __import__("torch").get_num_threads()})


if __name__ == "__main__":
    main()
