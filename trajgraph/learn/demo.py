"""The demo's learning round: train the MiniLM head on the training split's search data, then
measure greedy and one search with it on the test split, beside the base policy's rows.

`trajgraph demo` calls `learning_round` after its optimizer table. The rows it
adds (optimizer names ending in "· trained" / "· base argmax") join the same
table and plot. Everything runs with seeded policies and `repeatable=True`, so
the numbers repeat run after run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgraph.learn.evolve import check_splits, stamp
from trajgraph.learn.graph import policy_version
from trajgraph.learn.train import train_policy
from trajgraph.store import Store

TRAINED = "· trained"


@dataclass(frozen=True)
class LearningSettings:
    """How much the round explores and trains (the demo's defaults fit its 10-minute budget on 2 cores)."""

    train_games: int = 24  # training-split games explored by `explore` (the reward model's games are reused too)
    explore: tuple[str, ...] = ("best-of-n",)
    search: str = "rro"  # the search measured on top of the trained policy
    epochs: int = 30
    features: str = "full"
    temperature: float = 0.3  # the trained head's sampling temperature (see trainable.TRAINED_TEMPERATURE)
    situation: str = "commands"  # TextWorld: the admissible commands are the state (see trajgraph.learn.data.run_decisions)


@dataclass
class LearningRound:
    names: list[str]
    results: list[Any]
    policy: str
    card: dict[str, Any] = field(default_factory=dict)


def learning_round(suite: Any, test: Sequence[Any], *, base_for: Callable[[Any], Any], reward: Any, budget: int, store: Store,
                   out: Path, seed: int, workers: int, graph_name: str, settings: LearningSettings | None = None,
                   progress: Callable[[str, int], Callable[[Any], None]] | None = None) -> LearningRound:
    """Explore the training split with the base policy, train a head on every training-split run
    in the store, and evaluate it (greedy and `settings.search`) on `test`; also greedy argmax of
    base and trained policies, so a gain from training is not mistaken for one from temperature."""
    from trajgraph import bench
    from trajgraph.policies import minilm_policy
    from trajgraph.policies.head import load_trainable_policy

    s = settings or LearningSettings()
    tick = progress or (lambda label, total: (lambda result: None))
    train = suite.tasks("train", s.train_games, seed)
    check_splits(train, test)
    explore = asyncio.run(bench.run_bench(train, list(s.explore), policy_for=base_for, reward=None, budget=budget, store=store,
                                          concurrency=workers, tags=("train", "learn"), graph_name=graph_name, repeatable=True,
                                          on_result=tick(f"learning round: explore {len(train)} training games", len(train) * len(s.explore))))
    folder = out / "policy-r1"
    train_ids = [t.id for t in train] + [r.task for r in store.runs(tag="train") if r.task]
    trained = train_policy(store, folder, tasks=sorted(set(train_ids) - {t.id for t in test}), round=1, seed=seed, name="minilm-head-r1",
                           epochs=s.epochs, features=s.features, temperature=s.temperature, situation=s.situation)
    policy = load_trainable_policy(folder, seed=seed)
    argmax = load_trainable_policy(folder, temperature=0.0, seed=seed)
    base_argmax = minilm_policy(temperature=0.0, seed=seed)
    stamp(store, [r.run_id for r in explore], round=0, version={"name": "minilm", "hash": None, "round": 0}, split="train")
    runs = [
        (f"greedy {TRAINED}", "greedy", policy),
        (f"{s.search} {TRAINED}", s.search, policy),
        ("greedy · base argmax", "greedy", base_argmax),
        (f"greedy {TRAINED} argmax", "greedy", argmax),
    ]
    results: list[Any] = []
    for label, optimizer, pol in runs:
        def view(task: Any, p: Any = pol) -> Any:
            return p.view()

        done = asyncio.run(bench.run_bench(test, [optimizer], policy_for=view, reward=reward, budget=budget,
                                           store=store, concurrency=workers, tags=("test", "learn"), graph_name=graph_name,
                                           repeatable=True, on_result=tick(f"learning round: {label} on {len(test)} test games", len(test))))
        stamp(store, [r.run_id for r in done], round=1 if pol is not base_argmax else 0, version=policy_version(pol), split="test")
        for r in done:
            r.optimizer = label
        results += done
    return LearningRound(names=[label for label, _, _ in runs], results=results, policy=policy.name, card=trained.card)




def demo_rows(names: list[str], results: list[Any], suite: Any, test: Sequence[Any], *, progress: Callable[[], Any],
              **kwargs: Any) -> tuple[list[str], list[Any]]:
    """The demo's optimizer names and results with the learning round's rows appended.

    progress: a factory of rich `Progress` bars (the demo's own). kwargs: see `learning_round`."""
    with progress() as prog:
        def bar(label: str, total: int) -> Callable[[Any], None]:
            job = prog.add_task(label, total=total)
            return lambda result: prog.advance(job)

        extra = learning_round(suite, test, progress=bar, **kwargs)
    return names + extra.names, results + extra.results


__all__ = ["learning_round", "demo_rows", "LearningRound", "LearningSettings", "TRAINED"]
