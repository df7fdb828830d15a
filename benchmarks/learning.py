"""Learning from search on TextWorld: greedy and search with the trained MiniLM head vs the base policy.

The demo's setting (tw-simple, the 20 test games of seed 0, 100 policy calls a
game), with more training data: best-of-n and MCTS explore `--train-games`
training games with the base MiniLM policy (temperature 0.1), the head is
trained on every training-split run, then on the test games:

- greedy with the base policy at its sampling temperature 0.1 (the demo's row)
  and with the trained head at each of `--temperatures` (1.0: its fitted
  distribution, where an untrained head samples exactly like the base at 0.1;
  0.3: what trained heads use by default);
- greedy at argmax (temperature 0) for both, so a gain from training is not
  mistaken for one from a lower temperature;
- best-of-n at the same budget on top of each.

Searches run with repeatable=True: the same table every run (given the same store).
Run: python benchmarks/learning.py [--train-games 80] [--tasks 20] [--situation commands] [--temperatures 1,0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from _table import emit

from trajgraph.bench import run_bench, summarise


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-games", type=int, default=80)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--situation", default="commands")
    ap.add_argument("--features", default="full")
    ap.add_argument("--temperatures", default="1,0.3", help="sampling temperatures of the trained head to measure")
    ap.add_argument("--work", default="learning-out", help="folder for the store and the trained head (reused if present)")
    args = ap.parse_args()

    from trajgraph.adapters.textworld_env import TextWorldSuite
    from trajgraph.learn import train_policy
    from trajgraph.policies import minilm_policy
    from trajgraph.policies.head import load_trainable_policy
    from trajgraph.policies.prompt import SeededPolicy
    from trajgraph.store import Store

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    suite = TextWorldSuite()
    train, test = suite.tasks("train", args.train_games, 0), suite.tasks("test", args.tasks, 0)
    store = Store(work / "learn.db")
    base = minilm_policy(temperature=0.1, seed=0)
    started = time.time()
    if not store.runs(tag="train", limit=1):
        asyncio.run(run_bench(train, ["best-of-n", "mcts"], policy_for=lambda t: base.view(), budget=args.budget, store=store,
                              concurrency=2, tags=("train",), graph_name="textworld", repeatable=True))
    explored = time.time() - started
    t0 = time.time()
    card = train_policy(store, work / "head", tasks=[t.id for t in train], situation=args.situation, features=args.features).card
    trained_s = time.time() - t0
    policies: dict[str, SeededPolicy] = {"base T=0.1": base}
    for t in (float(x) for x in args.temperatures.split(",")):
        policies[f"trained T={t:g}"] = load_trainable_policy(work / "head", temperature=t)
    policies.update({"base argmax": minilm_policy(temperature=0.0, seed=0),
                     "trained argmax": load_trainable_policy(work / "head", temperature=0.0)})
    rows = []
    for label, policy in policies.items():
        for optimizer in ("greedy", "best-of-n") if "argmax" not in label else ("greedy",):

            def policy_for(task: Any, p: SeededPolicy = policy) -> SeededPolicy:
                return p.view()

            results = asyncio.run(run_bench(test, [optimizer], policy_for=policy_for, budget=args.budget,
                                            concurrency=2, repeatable=True, graph_name="textworld"))
            s = summarise(results, [optimizer])[0]
            rows.append({"policy": label, "optimizer": optimizer, "success": s.success_rate,
                         "solved": f"{round(s.success_rate * s.tasks)}/{s.tasks}", "mean score": s.mean_score,
                         "policy calls": s.policy_calls})
    emit("learning", f"TextWorld tw-simple, {len(test)} test games, head trained on {len(train)} training games "
                     f"({card['data']['decisions']} decisions, {card['data']['preferences']} pairs, {card['data']['detours']} detours)",
         rows, extra={"card": card, "explore_s": explored, "train_s": trained_s, "args": vars(args)})


if __name__ == "__main__":
    main()
