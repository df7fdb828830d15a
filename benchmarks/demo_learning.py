"""The demo's learning round alone, on a copy of a finished demo's store: rows, validation rows, CPU-seconds.

Why: a whole `trajgraph demo` takes minutes and its wall times under load say little; this runs
only `trajgraph.learn.demo.learning_round` (in one process) on a copy of OUT/demo.db with the
learning round's runs deleted and OUT/reward-model as the reward model, so designs of the round
(`LearningSettings` fields as JSON) compare at the same data, by CPU-seconds (getrusage, this
process and its children). Every head (`policy-r*`) is also played at argmax on 20 training-split
games the round never explores (seeds 1000048-1000067): the validation split designs are chosen on.

Run: python benchmarks/demo_learning.py DEMO_OUT WORK ['{"rounds": [{"explore": ["mcts"]}], ...}'] [--name NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

from _stores import copy_store, prune
from _table import emit

VALIDATION = (48, 68)  # training-split positions: past any learning round's games (<= 48), never explored


def cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def settings_from(text: str) -> Any:
    """`LearningSettings` from JSON: lists as tuples, "rounds" as a list of `Round` fields, "options" as an object."""
    from trajgraph.learn.demo import LearningSettings, Round

    opts = json.loads(text)
    if "temperatures" in opts:
        opts["temperatures"] = tuple(opts["temperatures"])
    if "rounds" in opts:
        opts["rounds"] = tuple(Round(**{**r, "explore": tuple(r.get("explore", ())),
                                        **({"options": tuple(r["options"].items())} if "options" in r else {})})
                               for r in opts["rounds"])
    return LearningSettings(**opts)


def prepared_store(src: Path, work: Path) -> Any:
    """A copy of the demo's store without the runs of its learning round (tag "learn") and the runs under them."""
    from trajgraph.store import Store

    db = work / "store.db"
    db.unlink(missing_ok=True)
    copy_store(src / "demo.db", db)
    prune(db, lambda run: "learn" in run.tags)
    return Store(db)


def greedy(tasks: list[Any], policy: Any) -> tuple[int, float]:
    from trajgraph import bench

    got = asyncio.run(bench.run_bench(tasks, ["greedy"], policy_for=lambda t: policy.view(), budget=100, concurrency=2, repeatable=True,
                                      graph_name="textworld"))
    return sum(r.success for r in got), round(sum(r.outcome or 0.0 for r in got) / len(got), 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("demo", help="a finished `trajgraph demo` output folder (demo.db, reward-model/)")
    ap.add_argument("work")
    ap.add_argument("settings", nargs="?", default="{}", help="LearningSettings fields as JSON (default: the demo's)")
    ap.add_argument("--name", default="demo_learning")
    args = ap.parse_args()

    from trajgraph import reward as rw
    from trajgraph.adapters.textworld_env import TextWorldSuite
    from trajgraph.bench import wilson
    from trajgraph.cli.bench import policy_factory
    from trajgraph.learn.demo import learning_round
    from trajgraph.policies import minilm_policy
    from trajgraph.policies.head import load_trainable_policy

    src, work = Path(args.demo), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    settings = settings_from(args.settings)
    store = prepared_store(src, work)
    suite = TextWorldSuite()
    test = suite.tasks("test", 20, 0)
    reward = rw.LocalRewardModel(src / "reward-model", fast="auto")
    policy_for, _ = policy_factory("minilm", model=None, skill=0.6, seed=0)
    c0, w0 = cpu(), time.time()
    done = learning_round(suite, test, base_for=policy_for, reward=reward, budget=100, store=store, out=work / "out", seed=0,
                          workers=2, graph_name="textworld", settings=settings)
    cpu_s, wall_s = cpu() - c0, time.time() - w0
    val = suite.tasks("train", VALIDATION[1], 0)[VALIDATION[0]:]
    heads: dict[str, Any] = {"base argmax": minilm_policy(temperature=0.0, seed=0)}
    heads.update({h.name: load_trainable_policy(h, temperature=0.0, seed=0) for h in sorted((work / "out").glob("policy-r*"))})
    validation = {name: greedy(val, p) for name, p in heads.items()}
    rows = []
    for name in done.names:
        got = [r for r in done.results if r.optimizer == name]
        wins = sum(r.success for r in got)
        lo, hi = wilson(wins, len(got))
        rows.append({"row": name, "test": f"{wins}/{len(got)} ({lo:.0%}–{hi:.0%})",
                     "score": round(sum(r.outcome or 0.0 for r in got) / len(got), 3),
                     "calls": round(sum(r.policy_calls for r in got) / len(got), 1)})
    emit(args.name, f"the demo's learning round alone: {cpu_s:.1f} CPU-s, {wall_s:.0f} s wall; validation (argmax, 20 training games "
                    f"never explored): {', '.join(f'{k} {v[0]}/20' for k, v in validation.items())}", rows,
         extra={"settings": repr(settings), "cpu_s": round(cpu_s, 1), "wall_s": round(wall_s, 1), "curve": done.curve,
                "validation": validation, "decoding": done.decoding})


if __name__ == "__main__":
    main()
