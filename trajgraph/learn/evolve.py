"""`evolve`: rounds of search -> train -> evaluate, each round's agent trained on its own search data.

Round r searches the training split with policy r (and the reward model, if
any), stores every run tagged with the round and the policy's version (name and
content hash, also in each run's metadata), trains policy r+1 on all the
training split's data gathered so far, and evaluates policy r greedily and
with the search on the disjoint test split. It stops after `rounds` rounds or
as soon as test success stops rising. This is expert iteration (Anthony et al.
2017; ReST, Gulcehre et al. 2023): the search is the expert, the policy learns
to do without it, and a better policy makes the next search better.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.learn.graph import as_node_policy, policy_version
from trajgraph.learn.train import train_policy
from trajgraph.policies.head import trainable_policy
from trajgraph.store import Store


@dataclass
class RoundResult:
    """One row of the evolve table: policy r, the data its search produced, its test success."""

    round: int
    policy: str
    policy_hash: str | None
    train_search_success: float | None  # policy r's search on the training split (None: last round, no search)
    decisions: int | None  # what policy r+1 was trained on (cumulative)
    preferences: int | None
    test_greedy: float
    test_search: float
    test_greedy_score: float
    test_search_score: float
    wall_s: float


@dataclass
class EvolveReport:
    rounds: list[RoundResult]
    stopped: str  # "rounds", "no gain" or "not improved" (the fit did not improve: nothing promoted)
    policies: list[str] = field(default_factory=list)  # folders, round 1..
    plot: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": [asdict(r) for r in self.rounds], "stopped": self.stopped, "policies": self.policies,
                "plot": self.plot, "config": self.config}


def check_splits(train: Sequence[Any], test: Sequence[Any]) -> None:
    """Training on a test task would make every test number meaningless: refuse it."""
    shared = sorted({t.id for t in train} & {t.id for t in test})
    if shared:
        raise ConfigError(f"the training split shares {len(shared)} task(s) with the test split (e.g. {shared[0]}); use disjoint splits")
    if not train or not test:
        raise ConfigError("evolve needs at least one training task and one test task")


def _tag(version: dict[str, Any]) -> str:
    return f"policy:{version['name']}@{str(version.get('hash') or 'none')[:12]}"


def stamp(store: Store, search_ids: Sequence[str | None], *, round: int, version: dict[str, Any], split: str) -> None:
    """Tag each search run and its rollouts with the round, split and policy version; metadata says the same."""
    tags = ("evolve", f"round:{round}", f"split:{split}", _tag(version))
    updates = []
    for sid in [s for s in search_ids if s]:
        for run in [store.run(sid), *store.runs(parent_id=sid)]:
            meta = {**run.metadata, "policy": version, "round": round, "split": split}
            updates.append((run.id, {"tags": tuple(dict.fromkeys([*run.tags, *tags])), "metadata": meta}))
    if updates:
        store.write(run_updates=updates)


def _view(policy: Any) -> Callable[[Any], Any]:
    return (lambda task: policy.view()) if hasattr(policy, "view") else (lambda task: policy)


async def _bench(tasks: Sequence[Any], optimizers: Sequence[str], policy: Any, *, reward: Any, budget: int, store: Store | None,
                 tags: Sequence[str], workers: int, name: str, tick: Callable[[], None]) -> list[Any]:
    from trajgraph import bench

    return await bench.run_bench(tasks, optimizers, policy_for=_view(policy), reward=reward, budget=budget, store=store,
                                 concurrency=workers, tags=tags, graph_name=name, repeatable=True, on_result=lambda r: tick())


def _rate(results: Sequence[Any], optimizer: str) -> tuple[float, float]:
    rs = [r for r in results if r.optimizer == optimizer]
    if not rs:
        return 0.0, 0.0
    return sum(r.success for r in rs) / len(rs), sum(r.outcome or 0.0 for r in rs) / len(rs)


def evolve(
    train: Sequence[Any],
    test: Sequence[Any],
    *,
    store: Store | str | Path,
    out: str | Path,
    policy: Any = None,
    rounds: int = 2,
    optimizer: str = "best-of-n",
    budget: int = 100,
    reward: Any = None,
    retrain_reward: bool = False,
    name: str = "evolve",
    seed: int = 0,
    workers: int = 2,
    train_options: dict[str, Any] | None = None,
    on_round: Callable[[RoundResult], None] | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> EvolveReport:
    """Run up to `rounds` rounds of search on `train`, training, and evaluation on `test`.

    train / test: task lists (a suite's `tasks("train", n)` / `tasks("test", n)`), disjoint.
    policy: the starting policy (a folder, an object with `propose`); None: an untrained
    MiniLM head, which ranks like the demo's MiniLM policy. optimizer: the search used
    on both splits ("best-of-n", "rro", "mcts", ...). reward: a reward model for the
    search; with `retrain_reward`, a new local reward model is trained on the store
    after each round's search and used from then on. on_round: called with each row.
    progress(label, total) -> tick: hook for progress bars.
    """
    from trajgraph import bench

    check_splits(train, test)
    if rounds < 0:
        raise ConfigError(f"rounds must be >= 0, got {rounds}")
    bench.parse_optimizers([optimizer])
    store = Store(store) if isinstance(store, (str, Path)) else store
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    current = as_node_policy(policy) if policy is not None else _untrained(seed)
    tick_of = progress or (lambda label, total: (lambda: None))
    rows: list[RoundResult] = []
    folders: list[str] = []
    stopped = "rounds"
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        version = policy_version(current)
        tick = tick_of(f"round {r}: evaluate {version['name']} on {len(test)} test tasks", 2 * len(test))
        test_results = asyncio.run(_bench(test, ["greedy", optimizer], current, reward=reward, budget=budget, store=store,
                                          tags=("evolve", "test"), workers=workers, name=name, tick=tick))
        stamp(store, [x.run_id for x in test_results], round=r, version=version, split="test")
        greedy, greedy_score = _rate(test_results, "greedy")
        searched, search_score = _rate(test_results, optimizer)
        row = RoundResult(round=r, policy=version["name"], policy_hash=version.get("hash"), train_search_success=None, decisions=None,
                          preferences=None, test_greedy=greedy, test_search=searched, test_greedy_score=greedy_score,
                          test_search_score=search_score, wall_s=0.0)
        if rows and max(greedy, searched) <= max(rows[-1].test_greedy, rows[-1].test_search):
            stopped = "no gain"
        elif r < rounds:
            tick = tick_of(f"round {r}: search {len(train)} training tasks", len(train))
            train_results = asyncio.run(_bench(train, [optimizer], current, reward=reward, budget=budget, store=store,
                                               tags=("evolve", "train"), workers=workers, name=name, tick=tick))
            stamp(store, [x.run_id for x in train_results], round=r, version=version, split="train")
            row.train_search_success = _rate(train_results, optimizer)[0]
            folder = out / f"policy-r{r + 1}"
            trained = train_policy(store, folder, tags=("split:train",), round=r + 1, seed=seed, name=f"{name}-r{r + 1}",
                                   **(train_options or {}))
            row.decisions = trained.card.get("data", {}).get("decisions")
            row.preferences = trained.card.get("data", {}).get("preferences")
            if trained.improved:  # a fit that kept its start or did not improve is not promoted (issue 22.3)
                folders.append(str(folder))
                current = as_node_policy(folder)
            else:
                stopped = "not improved"
            if retrain_reward:
                reward = _retrain_reward(store, out / f"reward-r{r + 1}", seed)
        row.wall_s = time.perf_counter() - t0
        rows.append(row)
        if on_round is not None:
            on_round(row)
        if stopped in ("no gain", "not improved") or r == rounds:
            break
    report = EvolveReport(rounds=rows, stopped=stopped, policies=folders,
                          config={"train_tasks": [t.id for t in train], "test_tasks": [t.id for t in test], "optimizer": optimizer,
                                  "budget": budget, "rounds": rounds, "seed": seed, "retrain_reward": retrain_reward})
    report.plot = plot_rounds(rows, str(out / "evolve.png"), f"{name}: test success by round ({optimizer}, {budget} calls)")
    (out / "evolve.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


def _untrained(seed: int) -> Any:
    return trainable_policy(seed=seed)


def _retrain_reward(store: Store, folder: Path, seed: int) -> Any:
    from trajgraph import reward as rw

    rw.train(store, folder, labels="auto", seed=seed, epochs=1)
    return rw.LocalRewardModel(folder)


def plot_rounds(rows: Sequence[RoundResult], path: str, title: str) -> str | None:
    """Test success against round, greedy and search, as a PNG; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    xs = [r.round for r in rows]
    ax.plot(xs, [r.test_greedy for r in rows], marker="o", label="greedy (no search)")
    ax.plot(xs, [r.test_search for r in rows], marker="s", label="search")
    ax.set_xlabel("round (policy trained on rounds < r)")
    ax.set_ylabel("test success rate")
    ax.set_xticks(xs)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["evolve", "EvolveReport", "RoundResult", "check_splits", "stamp", "plot_rounds"]
