"""The demo's TextWorld searches alone, with a reward model held fixed (issue 19's gate).

`trajgraph demo` trains its reward model on its own exploration (best-of-n and MCTS,
outcome only, on 8 training games), so a change to the search changes the model too,
and a whole demo mixes both effects. This script separates them: it runs the demo's
optimizers (bench settings, MiniLM policy at T=0.1, seed 0, 100 policy calls,
repeatable) on the demo's 20 test games with the reward model you give (`--rm`, a
folder), or with the one the demo would train now (`--explore`: explore and train as
the demo does, transpositions off; a model trained before on the same data is reused
from the cache).

    python benchmarks/textworld_gate.py --rm ~/.cache/trajgraph/reward-models/KEY --label mine
    python benchmarks/textworld_gate.py --explore --label demo_rm
    python benchmarks/textworld_gate.py --rm DIR --settings '{"rro": {"widen": "value"}}'

Prints one line per optimizer (successes, which games, mean outcome) and writes
benchmarks/results/textworld_gate_<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def reward_model(explore: bool, rm: str | None, store: Any, policy_for: Any, suite: Any, seed: int, budget: int) -> tuple[str, dict[str, Any]]:
    """The reward-model folder: `rm`, or the demo's own (explore 8 training games, train or reuse)."""
    from trajgraph import bench
    from trajgraph import reward as rw

    if rm:
        return rm, {"given": rm}
    if not explore:
        raise SystemExit("give --rm DIR or --explore")
    train = suite.tasks("train", 8, seed)
    asyncio.run(bench.run_bench(train, ["best-of-n", "mcts"], policy_for=policy_for, reward=None, budget=budget, store=store,
                                concurrency=1, tags=("train",), graph_name="textworld", repeatable=True, transpositions=False))
    out = tempfile.mkdtemp(prefix="tw-gate-rm-")
    atexit.register(shutil.rmtree, out, True)  # the trained model lives on in the cache (printed)
    done = rw.train_or_reuse(store, out, labels="auto", seed=seed, epochs=1, progress=False)
    info = {k: v for k, v in done.report.items() if isinstance(v, (int, float, str, bool))}
    info.update(reused=done.reused, cache=str(done.cache))
    return out, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rm", help="a trained reward-model folder")
    ap.add_argument("--explore", action="store_true", help="train (or reuse) the reward model as the demo does")
    ap.add_argument("--optimizers", default="rro,mcts,se-agent,best-of-n")
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", default="{}", help='optimizer settings over the bench\'s, JSON: {"mcts": {"k": 2}}')
    ap.add_argument("--label", default="current")
    args = ap.parse_args()

    from trajgraph import bench
    from trajgraph.cli.bench import load_suite, policy_factory
    from trajgraph.reward import LocalRewardModel
    from trajgraph.store import Store

    for name, extra in json.loads(args.settings).items():
        bench.OPTIMIZERS[name] = functools.partial(bench.OPTIMIZERS[name], **extra)
    suite = load_suite("textworld")
    policy_for, _ = policy_factory("minilm", model=None, skill=0.6, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "gate.db")
        folder, rm_info = reward_model(args.explore, args.rm, store, policy_for, suite, args.seed, args.budget)
        reward = LocalRewardModel(folder, fast="auto")
        test = suite.tasks("test", args.tasks, args.seed)
        rows: list[dict[str, Any]] = []
        for name in bench.parse_optimizers(args.optimizers):
            t0 = time.time()
            done = asyncio.run(bench.run_bench(test, [name], policy_for=policy_for, reward=reward, budget=args.budget, store=store,
                                               concurrency=1, tags=("test",), graph_name="textworld", repeatable=True))
            wins = sum(r.success for r in done)
            mean = sum(r.outcome or 0.0 for r in done) / len(done)
            print(f"{name:10s} {wins}/{len(done)}  {''.join('X' if r.success else '.' for r in done)}  mean outcome {mean:.2f}"
                  f"  calls {sum(r.policy_calls for r in done) / len(done):.1f}  {time.time() - t0:.0f}s", flush=True)
            rows.append({"optimizer": name, "successes": wins, "tasks": len(done), "mean_outcome": round(mean, 3),
                         "solved": [r.task for r in done if r.success], "wall_s": round(time.time() - t0, 1)})
        store.close()
    RESULTS.mkdir(exist_ok=True)
    out = {"label": args.label, "settings": json.loads(args.settings), "reward_model": rm_info, "budget": args.budget,
           "policy": "minilm T=0.1", "seed": args.seed, "rows": rows}
    (RESULTS / f"textworld_gate_{args.label}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
