"""A bench's searches split over two processes: this one and a second interpreter running this module.

Why: the searches of one process share one GIL (the search code, LangGraph and the
environment are Python), so two searches in flight use about one core. A second
process takes every other search and the machine's second core. The searches are
repeatable (policies seeded by the state, the reward model's fast path fixed), so
the table is the same as in one process; `tests/test_bench.py` checks it.

The second process is given names, not objects: the suite, policy and reward by
name, the reward model's folder and fast path, the store's location and the
positions of its jobs. It rebuilds the run from them, writes its searches to the
same store and prints each result as one JSON line. If it fails, its searches
run here instead, so a broken second process costs time, never rows.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_MARK = "trajgraph-shard-result "


@dataclass(frozen=True)
class Recipe:
    """What a second process needs to run some of a bench's searches (JSON: names, paths, numbers)."""

    suite: str
    split: str
    n: int
    seed: int
    policy: str
    skill: float
    reward: str
    reward_dir: str | None
    reward_fast: str | None
    db: str
    optimizers: list[str]
    budget: int
    tags: list[str]
    graph_name: str
    repeatable: bool
    concurrency: int
    transpositions: bool = True
    only: list[int] = field(default_factory=list)


def split_searches(recipe: Recipe, run_here: Callable[[Sequence[int]], list[Any]],
                   on_result: Callable[[Any], None] | None = None, note: Callable[[str], None] = print) -> list[Any]:
    """Every search of `recipe`, in job order: the even positions by `run_here(positions)`, the odd
    ones by a second process (whose results also go to `on_result` as they come)."""
    from trajgraph.bench import TaskResult

    total = len(recipe.optimizers) * recipe.n
    theirs = list(range(1, total, 2))
    results: dict[int, Any] = {}
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(asdict(Recipe(**{**asdict(recipe), "only": theirs})))],
                                   stdout=subprocess.PIPE, stderr=errors, text=True)

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith(_MARK):
                    position, row = json.loads(line[len(_MARK):])
                    results[position] = TaskResult(**row)
                    if on_result is not None:
                        on_result(results[position])

        reader = threading.Thread(target=read, name="trajgraph-shard-reader", daemon=True)
        reader.start()
        try:
            mine = list(range(0, total, 2))
            for position, result in zip(mine, run_here(mine)):
                results[position] = result
        except BaseException:
            process.kill()
            raise
        finally:
            code = process.wait()
            reader.join()
        left = [i for i in theirs if i not in results]
        if left:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {code}"]
            note(f"the second search process stopped ({tail[0][:200]}); running its {len(left)} searches here")
            for position, result in zip(left, run_here(left)):
                results[position] = result
                if on_result is not None:
                    on_result(result)
    return [results[i] for i in range(total)]


def _run(recipe: Recipe) -> None:
    """The second process: rebuild the run from `recipe`, run its share, print each result."""
    from trajgraph import bench
    from trajgraph.cli._common import open_db
    from trajgraph.cli._parts import load_suite, make_reward, policy_factory

    tasks = load_suite(recipe.suite).tasks(recipe.split, recipe.n, recipe.seed)
    policy_for, _ = policy_factory(recipe.policy, model=None, skill=recipe.skill, seed=recipe.seed)
    if recipe.reward == "rm":
        from trajgraph.reward import LocalRewardModel

        reward = LocalRewardModel(str(recipe.reward_dir), fast=recipe.reward_fast)
    else:
        reward = make_reward(recipe.reward)
    store = open_db(recipe.db, write=True)
    jobs = [(task.id, name) for name in recipe.optimizers for task in tasks]
    position_of = {jobs[i]: i for i in recipe.only}
    lock = threading.Lock()

    def report(result: Any) -> None:  # as each search ends: the parent's progress moves with this process's
        with lock:
            print(_MARK + json.dumps([position_of[(result.task, result.optimizer)], asdict(result)], default=str), flush=True)

    asyncio.run(bench.run_bench(tasks, recipe.optimizers, policy_for=policy_for, reward=reward, budget=recipe.budget,
                                store=store, concurrency=recipe.concurrency, tags=tuple(recipe.tags), on_result=report,
                                graph_name=recipe.graph_name, repeatable=recipe.repeatable, only=recipe.only,
                                transpositions=recipe.transpositions))
    store.close()


if __name__ == "__main__":
    _run(Recipe(**json.loads(sys.argv[1])))
