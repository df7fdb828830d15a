"""What coverage buys: the same number of training trajectories collected with plain exploration
vs novelty-seeking exploration + near-duplicate removal, the same head training, the same test.

Suite: generated FrozenLake 4x4 maps (deterministic). Training tasks come from the suite's
generator (`generate_tasks`, the "train" seeds); the test tasks are the disjoint "test" seeds.

- plain: `RandomPolicy` (uniform over the admissible moves), N episodes round-robin over the
  training maps.
- novelty: `NoveltyPolicy(RandomPolicy)`, the first N episodes (no dedupe).
- novelty+dedupe: `NoveltyPolicy(RandomPolicy)` (count bonus on unseen (situation, action) pairs),
  1.5 N episodes, then `dedupe` (Jaccard >= 0.8 of action bigrams, better outcome kept), then
  the first N kept in collection order, so both arms hand N trajectories to training.

Both arms: the MiniLM head (`trainable_policy`) fitted by `trainable_fit.fit` on the decisions
of the successful trajectories, same config and seed; evaluated greedy (temperature 0) on the
test maps. Coverage is counted on the N trajectories each arm trains on.

Run: python benchmarks/synthesis.py [--episodes 160] [--train-tasks 16] [--test-tasks 30] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _table import emit

from trajgraph.adapters.gym_toytext import FrozenLakeSuite
from trajgraph.learn.head_fit import FitConfig, fit
from trajgraph.learn.synthesis import (
    NoveltyPolicy,
    RandomPolicy,
    Trajectory,
    collect,
    coverage_of,
    decisions_of,
    dedupe,
    generate_tasks,
    rollout,
)
from trajgraph.policies.head import trainable_policy


def train_and_eval(trajs: list[Trajectory], test: list, seed: int) -> tuple[float, int]:
    ds = decisions_of(trajs)
    if not ds:
        return 0.0, 0
    policy = trainable_policy(temperature=0.0, seed=seed)
    fit(policy, ds, [], FitConfig(seed=seed, epochs=30, min_steps=200))
    wins = sum(rollout(t, policy).outcome >= 1.0 for t in test)
    return wins / len(test), len(ds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=160)
    ap.add_argument("--train-tasks", type=int, default=16)
    ap.add_argument("--test-tasks", type=int, default=30)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    suite = FrozenLakeSuite(size=4)
    test = suite.tasks("test", args.test_tasks, 0)
    rows: list[dict[str, Any]] = []
    base = trainable_policy(temperature=0.0)
    untrained = sum(rollout(t, base).outcome >= 1.0 for t in test) / len(test)
    for seed in [int(s) for s in args.seeds.split(",")]:
        train = generate_tasks(suite, args.train_tasks, seed)
        n = args.episodes
        started = time.perf_counter()
        plain = collect(train, RandomPolicy(seed), n)
        diverse_all = collect(train, NoveltyPolicy(RandomPolicy(seed), seed=seed), n + n // 2)
        diverse = dedupe(diverse_all, 0.8)[:n]
        for arm, trajs in (("plain", plain), ("novelty", diverse_all[:n]), ("novelty+dedupe", diverse)):
            success, n_dec = train_and_eval(trajs, test, seed)
            cov = coverage_of(trajs)
            rows.append({"seed": seed, "arm": arm, "trajectories": cov["trajectories"], "successful": cov["successful"],
                         "situations": cov["situations"], "situation_actions": cov["situation_actions"],
                         "train_decisions": n_dec, "test_success": success})
        print(f"seed {seed}: {time.perf_counter() - started:.1f}s")
    for arm in ("plain", "novelty", "novelty+dedupe"):
        rs = [r for r in rows if r["arm"] == arm]
        rows.append({"seed": "mean", "arm": arm, **{k: sum(r[k] for r in rs) / len(rs) for k in
                     ("trajectories", "successful", "situations", "situation_actions", "train_decisions", "test_success")}})
    emit("synthesis", f"Coverage vs plain exploration: FrozenLake 4x4, {args.episodes} training trajectories, "
         f"{args.test_tasks} test maps, greedy head", rows, {"args": vars(args), "untrained_test_success": untrained})
    print(f"untrained head, greedy: test success {untrained:.3f}")


if __name__ == "__main__":
    main()
