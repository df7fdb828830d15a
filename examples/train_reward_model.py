"""Train a local reward model on recorded trajectories, then search with it.

    python examples/train_reward_model.py [out_dir]

Offline, on CPU in about a minute. The data come from trajgraph's deceptive-chain
environment, one task per seed (each with its own sequence of doors):

1. recorded episodes whose final reward becomes `Run.outcome` (outcome labels);
2. RRO searches with Monte Carlo rollouts, which store step values on their tree
   nodes (process labels) and chosen-vs-rejected step pairs (pairwise labels);
3. `tg.reward.train(...)` on all three (the same as `trajgraph reward train --db
   out/runs.db --out out/rm`), validated on tasks it never trained on;
4. the trained model scoring prefixes, then guiding MCTS on a new task.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trajgraph as tg
from trajgraph.reward import LocalRewardModel, RewardItem
from trajgraph.testing.chain import chain_start, deceptive_chain_graph


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    store = tg.Store(out / "runs.db")

    # 1. Recorded episodes: the environment's final reward is the run's outcome.
    for seed in range(8):
        agent = tg.record(deceptive_chain_graph(depth=3, skill=0.5, trap=0.3, seed=seed), store=store, task=lambda s: s["task"])
        for _ in range(15):
            agent.invoke(chain_start(f"chain-{seed}"))
    for run in store.runs(kind="record"):
        store.update_run(run.id, outcome=run.output["reward"])

    # 2. Searches: Monte Carlo step values on the tree, step preference pairs.
    for seed in range(8, 12):
        tg.search(deceptive_chain_graph(depth=3, seed=seed, skill=0.6), chain_start(f"chain-{seed}"), decision_node="policy",
                  optimizer=tg.RRO(k_max=3), reward=tg.RolloutValue(n=3), budget=tg.Budget(policy_calls=60),
                  store=store, task=f"chain-{seed}")
    print({table: store.count(table) for table in ("runs", "steps", "search_nodes", "pairs")})

    # 3. Train: outcome + Monte Carlo + pairs, split by task, early stopping on validation AUC.
    report = tg.reward.train(store, out / "rm", labels="auto", epochs=2, max_length=96, freeze_layers=4, val_fraction=0.25)
    best = report.best
    print(f"trained on {report.train_tasks} tasks, validated on {report.val_tasks}: best epoch {report.best_epoch}, "
          f"val AUC {best.val_auc:.3f}" if best and best.val_auc is not None else "trained (no validation set)")

    # 4. Score prefixes of an unseen task, then let the model guide MCTS there.
    rm = LocalRewardModel(out / "rm", fast="auto")  # the fastest CPU path that ranks like fp32, measured at load
    task = "chain-20\nroom 0: three doors and a ledge"
    for turns in [(("left", "room 1: three doors and a ledge"),), (("left", "the floor gives way"),),
                  (("jump", "you jump to a ledge with a few coins; no way on"),)]:
        print(f"{rm.score([RewardItem(task, turns)])[0]:.3f}  after {turns[-1][1]!r}")
    result = tg.search(deceptive_chain_graph(depth=3, seed=20, skill=0.6), chain_start("chain-20"), decision_node="policy",
                       optimizer=tg.MCTS(k=3), reward=rm, budget=tg.Budget(policy_calls=40), store=store, task="chain-20")
    print(f"MCTS with the trained reward model: outcome {result.outcome}, {result.nodes} nodes")
    print(f"model: {out / 'rm'}   store: {out / 'runs.db'}   (trajgraph reward score RUN --db ... --model ...)")
    store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="trajgraph-rm-")))
