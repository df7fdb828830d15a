"""Expert iteration that compounds, measured: `tg.evolve` rounds on the partial-credit locked-boxes family.

The family (trajgraph.testing.locked_boxes): open the K containers the objective
names; all but one are locked until their (unmentioned) key is taken; the score is
the share opened, within 2K+1 actions. The MiniLM base policy at argmax opens the
free one and loops on a lock (full success 0%, mean 0.33).

Each variant runs `evolve` (24 training tasks, a quarter held out for validation,
20 unseen test tasks, `--rounds` rounds, the search at `--budget` policy calls) with
one training recipe; rows are per round, with Wilson intervals on success and
bootstrap intervals on the mean score (20 test tasks: intervals are wide).

- `all`: search soft targets (every expanded node) + cloning + pairs + detours;
- `no-targets`: the recipe before issue 18 (cloning of successes, pairs, detours);
- `targets-only`: the soft targets alone;
- `mcts+value`: MCTS, the value model retrained each round (`retrain_reward=True`);
- `mcts`: MCTS with Monte Carlo values only.

Families (`--family`):

- `boxes` (default): 3 containers, 2 distractor colours (results/learning_rounds.json);
- `boxes-hard`: 4 containers, 2 distractors, where the base's full success at its best
  decoding is 0% (results/learning_rounds_boxes_hard.json);
- `frozenlake`: generated 4x4 FrozenLake maps (adapters/gym_toytext.py, binary outcome),
  a second suite family (results/learning_rounds_frozenlake.json);
- `textworld`: the demo's tw-simple games (its 20 test games of seed 0 with `--test 20`).

`--features clause` trains heads that also read, per command, the observation's clause
about it (results/..._clause.json); `--check N` plays the base at its best decoding and
the last promoted policy greedily on N more unseen tasks (tighter intervals).

Run: python benchmarks/learning_rounds.py [--family boxes] [--variants all,no-targets,targets-only] [--work learning-rounds-out]
A finished variant's folder is read back, not rerun (evolve resumes from its state file).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from _table import emit

VARIANTS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "all": ("best-of-n", {}, False),
    "no-targets": ("best-of-n", {"use_targets": False}, False),
    "targets-only": ("best-of-n", {"bc_weight": 0, "pair_weight": 0, "use_pairs": False, "detour_weight": 0, "use_detours": False}, False),
    "mcts+value": ("mcts", {}, True),
    "mcts": ("mcts", {}, False),
}
FOLDERS = {"all": "bx_bon", "no-targets": "bx_old", "targets-only": "bx_tgt", "mcts+value": "bx_mcts_rm", "mcts": "bx_mcts"}


def bootstrap(xs: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    if not xs:
        return 0.0, 0.0
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(xs, k=len(xs))) / len(xs) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def paired_bootstrap(xs: list[float], ys: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(ys - xs) over tasks resampled together (the same tasks in both rows)."""
    return bootstrap([y - x for x, y in zip(xs, ys)], n, seed)


def greedy_check(tasks: list[Any], policy: Any, budget: int, name: str) -> list[float]:
    """Outcomes of `policy` played greedily (no search) on `tasks`."""
    import asyncio

    from trajgraph import bench

    view = policy.view() if hasattr(policy, "view") else policy
    got = asyncio.run(bench.run_bench(tasks, ["greedy"], policy_for=lambda t: view, budget=budget, concurrency=2,
                                      repeatable=True, graph_name=name))
    by_task = {r.task: float(r.outcome or 0.0) for r in got}
    return [by_task.get(t.id, 0.0) for t in tasks]


def family(name: str, args: argparse.Namespace) -> tuple[Any, str, str, str]:
    """(suite, folder prefix, results name, title) of a task family."""
    if name == "textworld":
        from trajgraph.adapters.textworld_env import TextWorldSuite

        return TextWorldSuite(), "tw", "learning_rounds_textworld", "TextWorld tw-simple (the demo's test games)"
    if name == "frozenlake":
        from trajgraph.adapters.gym_toytext import FrozenLakeSuite

        return (FrozenLakeSuite(size=args.size), "fl", "learning_rounds_frozenlake",
                f"generated {args.size}x{args.size} FrozenLake maps")
    from trajgraph.testing.locked_boxes import LockedBoxesSuite

    if name == "boxes":
        return LockedBoxesSuite(), "bx", "learning_rounds", "locked boxes (3 goals, 2 distractors)"
    if name == "boxes-hard":
        return (LockedBoxesSuite(goals=4, distractors=2), "bxh", "learning_rounds_boxes_hard",
                "locked boxes (4 goals, 2 distractors)")
    raise SystemExit(f"unknown family {name!r}: boxes, boxes-hard, frozenlake, textworld")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="all,no-targets,targets-only")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--work", default="learning-rounds-out")
    ap.add_argument("--family", default="boxes", help="boxes | boxes-hard | frozenlake | textworld")
    ap.add_argument("--size", type=int, default=4, help="FrozenLake map size")
    ap.add_argument("--train", type=int, default=24, help="training tasks (a quarter held out for validation)")
    ap.add_argument("--test", type=int, default=20, help="unseen test tasks")
    ap.add_argument("--features", default="full", help="the head's features: full | clause (the command's clause of the observation)")
    ap.add_argument("--mix", default="all", help="training data: all rounds | recent")
    ap.add_argument("--name", default=None, help="results/<name>.json (default: the family's, with features/mix/seed suffixes)")
    ap.add_argument("--seed", type=int, default=0, help="training tasks' seed and evolve's seed (the test tasks stay seed 0)")
    ap.add_argument("--check", type=int, default=0,
                    help="also play the base (at its best decoding) and the last promoted policy greedily on this many other unseen tasks")
    args = ap.parse_args()

    from trajgraph.bench import wilson
    from trajgraph.learn.evolve import evolve
    from trajgraph.store import Store

    suite, prefix, result_name, what = family(args.family, args)
    suffix = "" if args.features == "full" and args.mix == "all" else f"_{args.features}" + ("" if args.mix == "all" else f"_{args.mix}")
    suffix += f"_seed{args.seed}" if args.seed else ""
    result_name = args.name or result_name + suffix
    train, test = suite.tasks("train", args.train, args.seed), suite.tasks("test", args.test, 0)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    for variant in args.variants.split(","):
        optimizer, options, retrain = VARIANTS[variant]
        out = Path(args.work) / (FOLDERS[variant].replace("bx", prefix, 1) + suffix)
        started = time.time()
        report = evolve(train, test, store=f"{out}.db", out=out, rounds=args.rounds, optimizer=optimizer, budget=args.budget, seed=args.seed,
                        name="textworld" if prefix == "tw" else prefix, workers=2, retrain_reward=retrain, mix=args.mix,
                        train_options={"epochs": 30, **({} if args.features == "full" else {"features": args.features}),
                                       **({"situation": "commands"} if prefix == "tw" else {}), **options})
        extra[variant] = {"features": args.features, "mix": args.mix, "stopped": report.stopped, "decoding": report.config["decoding"], "wall_s": time.time() - started}
        store = Store(f"{out}.db")
        first: list[float] = []
        for row in report.rounds:
            cells: dict[str, Any] = {"variant": variant, "round": row.round, "promoted": row.promoted,
                                     "greedy decoding": "argmax" if row.greedy_temperature == 0 else f"T={row.greedy_temperature:g}"}
            for opt, label in (("greedy", "greedy"), (optimizer, "search")):
                runs = [r for r in store.runs(kind="search", tag=f"round:{row.round}") if "split:test" in r.tags
                        and (r.metadata or {}).get("optimizer") == opt]
                by_task = {r.task: float(r.outcome or 0.0) for r in sorted(runs, key=lambda r: r.started_at)}  # last run per task
                xs = [by_task.get(t.id, 0.0) for t in test]
                wins = sum(x >= 1.0 for x in xs)
                lo, hi = wilson(wins, len(xs))
                slo, shi = bootstrap(xs)
                cells[f"test {label}"] = f"{wins}/{len(xs)} ({lo:.0%}–{hi:.0%})"
                cells[f"{label} score"] = f"{sum(xs) / len(xs):.2f} ({slo:.2f}–{shi:.2f})"
                if label == "greedy":
                    first = first or xs
                    dlo, dhi = paired_bootstrap(first, xs)
                    cells["Δ greedy score vs round 0"] = f"{(sum(xs) - sum(first)) / len(xs):+.2f} ({dlo:+.2f}…{dhi:+.2f})"
            cells["val greedy/search"] = f"{row.val_greedy:.0%}/{row.val_search:.0%}"
            cells["value model AUC"] = "-" if not row.value_model or row.value_model.get("val_auc") is None else f"{row.value_model['val_auc']:.3f}"
            cells["next trained on"] = "-" if row.targets is None else f"{row.targets} targets, {row.decisions} decisions"
            rows.append(cells)
        if args.check:
            extra[variant]["check"] = check(suite, test, report, prefix, args)
    emit(result_name, f"evolve on {what}: {len(train)} training tasks (1/4 validation), {len(test)} unseen test tasks, "
                      f"{args.budget} calls", rows, extra=extra)


def check(suite: Any, test: list[Any], report: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Base (best decoding) and the last promoted policy, greedy, on `args.check` more unseen tasks (seed 1)."""
    from trajgraph.bench import wilson
    from trajgraph.policies.head import BASE_TEMPERATURE, load_trainable_policy, trainable_policy

    seen = {t.id for t in test}
    tasks = [t for t in suite.tasks("test", args.check + len(test), 1) if t.id not in seen][: args.check]
    base_t = float(report.config["decoding"]["temperature"])
    policies = {f"base ({'argmax' if base_t == 0 else f'T={base_t:g}'})": trainable_policy(seed=0, temperature=base_t / BASE_TEMPERATURE)}
    if report.config.get("incumbent"):
        policies[f"trained ({Path(report.config['incumbent']).name}, argmax)"] = load_trainable_policy(report.config["incumbent"], temperature=0.0)
    out: dict[str, Any] = {"tasks": len(tasks)}
    for label, policy in policies.items():
        xs = greedy_check(tasks, policy, args.budget, name)
        wins = sum(x >= 1.0 for x in xs)
        lo, hi = wilson(wins, len(xs))
        slo, shi = bootstrap(xs)
        out[label] = {"success": f"{wins}/{len(xs)} ({lo:.0%}–{hi:.0%})", "score": f"{sum(xs) / len(xs):.2f} ({slo:.2f}–{shi:.2f})"}
        print(f"check on {len(tasks)} more unseen tasks: {label}: {out[label]['success']}, mean score {out[label]['score']}")
    return out


if __name__ == "__main__":
    main()
