"""Learn from search: train the agent on its own search data, put it back into the graph, repeat.

    python examples/learn_from_search.py [out_dir] [--lm]

Offline, on CPU in well under a minute (add --lm for a two-step TRL SFT of
SmolLM2-135M on the same data, about a minute more):

1. an agent (the deceptive chain with the MiniLM policy) fails its task greedily;
2. an MCTS search of that task finds the way and records it (trajectories, pairs);
3. `tg.train_policy` fits the trainable MiniLM policy on the store
   (= `trajgraph train policy out/head --db out/runs.db`);
4. `tg.with_policy` puts it back into the agent's graph: the agent now solves the
   task with no search, and is recorded and searched like any graph;
5. `tg.evolve` runs a round of search -> train -> evaluate on a task suite
   (= `trajgraph evolve out/evolve --suite chain`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import trajgraph as tg
from trajgraph.testing import ScriptedPolicy
from trajgraph.testing.chain_suite import ChainSuite


def all_doors(state: dict[str, Any], k: int, rng: Any) -> list[dict[str, str]]:
    """A proposer that tries every door in a random order (the search's exploration)."""
    doors = ["left", "right", "up", "jump"]
    rng.shuffle(doors)
    return [{"action": a} for a in (doors * k)[:k]]


def main(out: Path, lm: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    store = tg.Store(out / "runs.db")
    task = ChainSuite(depth=4).tasks("train", 1)[0]

    # 1. The agent: an env loop whose decision node is the (untrained) MiniLM policy.
    graph, _ = task.make_graph(tg.trainable_policy(temperature=0.0))
    print(f"before training, greedy: reward {graph.invoke(task.input)['reward']}")

    # 2. Search: MCTS finds the exit and stores every rollout and step pair.
    found = tg.search(graph, task.input, decision_node="policy", optimizer=tg.MCTS(k=4), outcome=task.outcome,
                      budget=tg.Budget(policy_calls=80), store=store, policy=ScriptedPolicy(all_doors), task=task.id, repeatable=True)
    print(f"search: outcome {found.outcome} in {found.spent.policy_calls} policy calls")

    # 3. Train the small policy on what the search stored.
    trained = tg.train_policy(store, out / "head", temperature=0.0)
    print(f"trained {trained.card['name']}@{trained.card['hash'][:12]} on {trained.card['data']['decisions']} decisions "
          f"and {trained.card['data']['preferences']} pairs")

    # 4. Back into the graph: no search needed any more; recording and search work as on any graph.
    agent = tg.with_policy(graph, out / "head", decision_node="policy")
    recorded = tg.record(agent, store=store, name="chain-trained")
    print(f"after training, greedy: reward {recorded.invoke(task.input)['reward']}")
    again = tg.search(agent, task.input, decision_node="policy", optimizer=tg.Greedy(), outcome=task.outcome,
                      budget=tg.Budget(policy_calls=10), repeatable=True)
    print(f"greedy search with the trained policy as proposer: outcome {again.outcome}")

    if lm:  # the same data through TRL: a language model folder that loads as a policy
        sft = tg.train_policy(store, out / "sft", method="sft", max_steps=2, batch_size=1, max_length=128)
        policy = tg.load_policy(sft.path)
        print(f"SFT model {sft.path}: proposes {policy(task.input)['action']!r}")

    # 5. Rounds on a suite: search the training split, train, evaluate on the test split.
    suite = ChainSuite(depth=3)
    report = tg.evolve(suite.tasks("train", 2), suite.tasks("test", 2), store=out / "evolve.db", out=out / "evolve", rounds=1,
                       optimizer="mcts", budget=30, train_options={"epochs": 3}, workers=1)
    for row in report.rounds:
        print(f"evolve round {row.round}: policy {row.policy}@{str(row.policy_hash)[:12]} test greedy {row.test_greedy:.0%} "
              f"search {row.test_search:.0%}")
    print(f"plot: {report.plot}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="trajgraph-learn-")), "--lm" in sys.argv)
