"""TextWorld: the head's progress features and DAgger rounds with the apprentice search (issue 18).

Starts from the store of `learning_rounds.py --family textworld --variants mcts --train 80
--rounds 2 --features clause` (rounds 0-1: MCTS with the base, then with the round-1 head,
on 60 training games; 20 more held out for validation; the demo's 20 test games). Then:

1. `fit`: a head with `--features` (default "progress") on rounds 0-1's training-split data
   (the same data as that benchmark's round-2 head); with `--from-rounds 0`, on round 0's only
   (the base's MCTS; a copy of the store without the other rounds' runs), and that head is round 1;
2. `dagger` (`--dagger N` rounds): the apprentice search (`trajgraph.search.optimizers.Apprentice`,
   `--width` alternatives a state, `--explore-budget` calls) with the last head, argmax, on the
   60 training games (never validation or test) into a copy of the store, tagged round:k; a new
   head is fit on everything so far. That is DAgger / ExIt: the search labels the states the
   trained policy itself reaches (after taking the food, where the heads loop);
3. `--value OPTIONS`: that round's value model, `trajgraph.reward.train` on the training split's
   runs of the last head's rounds, and the apprentice search with the last head and it (the
   value model orders the alternatives tried at a state).

Every head is measured greedily at argmax (no search) on the 20 validation games and the 20 test
games, the apprentice search at `--budget` calls with it on the test games, and with `--check N`
the base at argmax and the last head (`--check-heads`: those rounds' heads) greedily on N more
unseen games (seed 1). Wilson intervals; each fold of the work is kept in `--work` and read back
when present (a rerun with more options measures only what is new).

Run: python benchmarks/learning_dagger.py --store learning-rounds-out/tw_mcts_clause.db [--dagger 1] [--check 100]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from _stores import copy_store, prune
from _table import emit


def keep_rounds(path: str | Path, rounds: set[int]) -> int:
    """Delete every run tagged with a round not in `rounds` (and the runs under it), so that the heads
    learn from those rounds only; the number of runs deleted."""
    keep = {f"round:{k}" for k in rounds}
    return prune(path, lambda run: any(t.startswith("round:") and t not in keep for t in run.tags))


def settle(path: str) -> None:
    """The store's write-ahead log into its file, before the file is renamed."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def state_of(evolve_dir: Path) -> dict[str, Any]:
    return json.loads((evolve_dir / "evolve-state.json").read_text())


def rate(results: list[Any]) -> dict[str, Any]:
    from trajgraph.bench import wilson

    wins = sum(r.success for r in results)
    lo, hi = wilson(wins, len(results))
    return {"solved": wins, "n": len(results), "text": f"{wins}/{len(results)} ({lo:.0%}–{hi:.0%})",
            "score": round(sum(r.outcome or 0.0 for r in results) / len(results), 3)}


def play(tasks: list[Any], policy: Any, optimizer: str, budget: int, **kw: Any) -> list[Any]:
    from trajgraph import bench

    return asyncio.run(bench.run_bench(tasks, [optimizer], policy_for=lambda t: policy.view(), budget=budget, concurrency=2,
                                       repeatable=True, graph_name="textworld", **kw))


def value_model(work: Path, head_round: int) -> Any:
    from trajgraph import reward as rw

    return rw.LocalRewardModel(work / f"value-r{head_round}")


def value_search(args: Any, work: Path, store: str, head_round: int, policy: Any, val: list[Any], test: list[Any],
                 rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    """Fit that round's value model (the reward model, on the training split's runs of the rounds the last
    head learned from: never validation or test outcomes), then the apprentice with the head and it."""
    from trajgraph import reward as rw
    from trajgraph.learn.evolve import folder_hash

    folder = work / f"value-r{head_round}"
    info_path = folder.with_suffix(".json")
    if not info_path.is_file():
        t0 = time.time()
        report = rw.train(store, folder, **{"labels": "auto", "epochs": 1, "seed": 0, "progress": False, "tags": ("split:train",),
                                            **json.loads(args.value)})
        best = report.best
        info_path.write_text(json.dumps({"fit_s": round(time.time() - t0), "load": os.getloadavg(), "hash": folder_hash(folder),
                                         "n_train": report.n_train, "n_val": report.n_val, "pairs": report.n_train_pairs,
                                         "best_epoch": report.best_epoch, "val_auc": None if best is None else best.val_auc,
                                         "val_pair_accuracy": None if best is None else best.val_pair_accuracy}))
    info = json.loads(info_path.read_text())
    model = value_model(work, head_round)
    compared: dict[str, Any] = {}
    for split, tasks in (("val", val), ("test", test)):  # the apprentice with the head, without and with the value model
        for label, kw in (("policy order", {}), ("value order", {"reward": model})):
            t0 = time.time()
            got = play(tasks, policy, "apprentice", args.budget, **kw)
            compared[f"{split}, {label}"] = {**rate(got), "calls": round(sum(r.policy_calls for r in got) / len(got), 1),
                                             "solved_ids": sorted(r.task for r in got if r.success), "wall_s": round(time.time() - t0)}
            print(split, label, json.dumps(compared[f"{split}, {label}"]), flush=True)
    s, v = compared["test, value order"], compared["val, value order"]
    row = {"head": f"round {head_round} + value model r{head_round}", "data": f"value: AUC {info['val_auc']:.3f}, pair acc {info['val_pair_accuracy']:.3f}",
           "decisions/targets/detours": "-", "best epoch": info["best_epoch"], "val greedy": f"val apprentice+value {v['text']}", "test greedy": "-",
           "test score": "-", f"test apprentice@{args.budget}": s["text"], "search score": s["score"], "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    rows.append(row)
    extra["value"] = {**info, "compared": compared, "folder": str(folder)}
    print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True, help="the learning_rounds textworld store (rounds 0-1)")
    ap.add_argument("--work", default="learning-dagger-out")
    ap.add_argument("--features", default="progress")
    ap.add_argument("--dagger", type=int, default=1, help="DAgger rounds after the fit")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--explore-budget", type=int, default=600)
    ap.add_argument("--budget", type=int, default=100, help="policy calls a game at test time")
    ap.add_argument("--check", type=int, default=0)
    ap.add_argument("--check-search", action="store_true", help="also the apprentice with the last head (and the value model) on them")
    ap.add_argument("--check-heads", default=None, help="comma-separated rounds of the heads checked (default: the last)")
    ap.add_argument("--fit", default="{}", help="extra train_policy options as JSON")
    ap.add_argument("--fit-first", default=None, help="the round-2 head's options instead (JSON; default: --fit)")
    ap.add_argument("--from-rounds", default=None, help="comma-separated rounds of the store to learn from (e.g. 0: the base's "
                                                        "search only); the first head is then round max+1 (default: all, head round 2)")
    ap.add_argument("--value", default=None, help="train a value model (trajgraph.reward.train options as JSON) on the last head's "
                                                  "training data and measure the apprentice search with both")
    ap.add_argument("--seed", type=int, default=0, help="the heads' fitting seed")
    ap.add_argument("--name", default="learning_dagger_textworld")
    args = ap.parse_args()

    from trajgraph import bench
    from trajgraph.adapters.textworld_env import TextWorldSuite
    from trajgraph.learn import train_policy
    from trajgraph.policies.head import load_trainable_policy, trainable_policy
    from trajgraph.search.optimizers import Apprentice
    from trajgraph.store import Store

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    evolve_dir = Path(args.store).with_suffix("")
    config = state_of(evolve_dir)["config"]
    suite = TextWorldSuite()
    every = suite.tasks("train", len(config["train_tasks"]) + len(config["val_tasks"]), 0)
    train = [t for t in every if t.id in set(config["train_tasks"])]
    val = [t for t in every if t.id in set(config["val_tasks"])]
    test = suite.tasks("test", 20, 0)
    options = {"features": args.features, **json.loads(args.fit)}
    bench.OPTIMIZERS["apprentice"] = functools.partial(Apprentice, width=args.width)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"args": vars(args), "rounds": []}

    def measure(label: str, folder: Path, store: str, data: str, fit_s: float) -> Any:
        policy = load_trainable_policy(folder, temperature=0.0)
        t0 = time.time()
        cached = folder / f"eval@{args.budget}.json"  # a rerun (e.g. with --value) reads the evaluations back
        if cached.is_file():
            v, g, s = (json.loads(cached.read_text())[k] for k in ("val", "test", "search"))
        else:
            v, g = rate(play(val, policy, "greedy", args.budget)), rate(play(test, policy, "greedy", args.budget))
            s = rate(play(test, policy, "apprentice", args.budget))
            cached.write_text(json.dumps({"val": v, "test": g, "search": s}))
        card = policy.card
        row = {"head": label, "data": data, "decisions/targets/detours": f"{card['data']['decisions']}/{card['data']['targets']}/{card['data']['detours']}",
               "best epoch": card["fit"]["best_epoch"], "val greedy": v["text"], "test greedy": g["text"], "test score": g["score"],
               f"test apprentice@{args.budget}": s["text"], "search score": s["score"],
               "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
        rows.append(row)
        extra["rounds"].append({**row, "fit_s": round(fit_s), "eval_s": round(time.time() - t0), "folder": str(folder), "store": store,
                                "val": v, "test": g, "search": s})
        print(json.dumps(row), flush=True)
        return policy

    def fit(folder: Path, store: str, first: bool = False) -> float:
        if (folder / "policy.json").is_file():
            return 0.0
        t0 = time.time()
        opts = {"features": args.features, **json.loads(args.fit_first)} if first and args.fit_first is not None else options
        train_policy(store, folder, tags=("split:train",), tasks=config["train_tasks"], situation="commands", epochs=30, seed=args.seed, **opts)
        return time.time() - t0

    store = args.store
    first = 2  # the store's rounds 0-1
    if args.from_rounds is not None:
        rounds = {int(k) for k in args.from_rounds.split(",")}
        first = max(rounds) + 1
        store = str(work / f"rounds-{'-'.join(map(str, sorted(rounds)))}.db")
        if not Path(store).exists():
            copy_store(args.store, store + ".part")
            print(f"{keep_rounds(store + '.part', rounds)} runs of other rounds dropped", flush=True)
            settle(store + ".part")
            os.replace(store + ".part", store)
    folder, head_round = work / f"head-r{first}", first
    policy = measure(f"round {first} (rounds <{first} data)", folder, store, f"MCTS rounds <{first}", fit(folder, store, first=True))
    for k in range(1, args.dagger + 1):
        round_ = first + k - 1
        nxt = str(work / f"dagger-r{round_}.db")
        if not Path(nxt).exists():
            t0 = time.time()
            shutil.copy(store, nxt + ".part")
            got = play(train, policy, "apprentice", args.explore_budget, store=Store(nxt + ".part"),
                       tags=("split:train", f"round:{round_}", "dagger"))
            Path(nxt).with_suffix(".json").write_text(json.dumps({**rate(got), "wall_s": round(time.time() - t0), "load": os.getloadavg(),
                                                                  "calls": round(sum(r.policy_calls for r in got) / len(got), 1)}))
            settle(nxt + ".part")
            os.replace(nxt + ".part", nxt)
        extra[f"dagger_r{round_}"] = json.loads(Path(nxt).with_suffix(".json").read_text())
        store = nxt
        folder, head_round = work / f"head-r{round_ + 1}", round_ + 1
        policy = measure(f"round {round_ + 1} (+ apprentice round {round_})", folder, store, f"+ DAgger round {round_}", fit(folder, store))
    if args.value is not None:
        value_search(args, work, store, head_round, policy, val, test, rows, extra)
    if args.check:
        seen = {t.id for t in test}
        tasks = [t for t in suite.tasks("test", args.check + len(test), 1) if t.id not in seen][: args.check]
        extra["check"] = {}
        heads = [work / f"head-r{k}" for k in map(int, args.check_heads.split(","))] if args.check_heads else [folder]
        for label, p in [("base argmax", trainable_policy(temperature=0.0))] + [
                (f"{h.name} argmax", policy if h == folder else load_trainable_policy(h, temperature=0.0)) for h in heads]:
            cached = work / f"check{args.check}-{label.replace(' ', '-')}.json"
            if not cached.is_file():
                cached.write_text(json.dumps(rate(play(tasks, p, "greedy", args.budget))))
            r = json.loads(cached.read_text())
            extra["check"][label] = r
            print(f"check on {len(tasks)} more unseen games: {label}: {r['text']}, score {r['score']}", flush=True)
        searches: list[tuple[str, dict[str, Any]]] = [("apprentice", {})] + ([("apprentice + value", {"reward": value_model(work, head_round)})] if args.value else [])
        for label, kw in searches if args.check_search else []:  # the last head's search on the same games
            cached = work / f"check{args.check}-{folder.name}-{label.replace(' ', '-')}.json"
            if not cached.is_file():
                got = play(tasks, policy, "apprentice", args.budget, **kw)
                cached.write_text(json.dumps({**rate(got), "calls": round(sum(r.policy_calls for r in got) / len(got), 1)}))
            r = json.loads(cached.read_text())
            extra["check"][f"{folder.name} {label}"] = r
            print(f"check on {len(tasks)} more unseen games: {folder.name} {label}@{args.budget}: {r['text']}, score {r['score']}, "
                  f"{r['calls']} calls a game", flush=True)
    emit(args.name, f"TextWorld tw-simple: {args.features} heads and DAgger rounds with the apprentice search "
                    f"({len(train)} training games, {len(val)} validation, {len(test)} test, {args.budget} calls)", rows, extra=extra)


if __name__ == "__main__":
    main()
