"""A bench's searches split over two processes: this one and a second interpreter running this module.

Why: the searches of one process share one GIL (the search code, LangGraph and the
environment are Python), so two searches in flight use about one core. A second
process takes every other search and the machine's second core. The searches are
repeatable (policies seeded by the state, the reward model's fast path fixed), so
the table is the same as in one process; `tests/test_bench.py` checks it.

One second process serves a whole run (`SecondProcess`): started first, it loads
torch and the models while this process generates games, and keeps its policy and
reward model from one phase to the next. It is given names, not objects: the suite,
policy and reward by name, the reward model's folder and fast path, the store's
location and the positions of its jobs (a `Recipe`, one JSON line on its stdin).
It rebuilds the searches, writes them to the same store and prints each result as
one JSON line. If it fails, its searches run here instead, so a broken second
process costs time, never rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_MARK = "trajgraph-shard-result "
_DONE = "trajgraph-shard-done"


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
    player: dict[str, Any] | None = None  # a learning round's policy (trajgraph.learn.demo.Player) instead of `policy`


class SecondProcess:
    """The second search process of a run: `start()` it early, `split(...)` each phase, `close()` at the end."""

    def __init__(self, policy: str, skill: float, seed: int) -> None:
        self.warm = (policy, skill, seed)  # the policy it loads at once, before the first recipe comes
        self.process: subprocess.Popen[str] | None = None
        self.errors = tempfile.TemporaryFile()
        self.lock = threading.Lock()
        self.results: dict[int, Any] = {}
        self.on_result: Callable[[Any], None] | None = None
        self.done = threading.Event()

    def start(self) -> SecondProcess:
        self.process = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(self.warm)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.errors, text=True)
        threading.Thread(target=self._read, name="trajgraph-second-process", daemon=True).start()
        return self

    def _read(self) -> None:
        from trajgraph.bench import TaskResult

        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(_MARK):
                position, row = json.loads(line[len(_MARK):])
                result = TaskResult(**row)
                with self.lock:
                    self.results[position] = result
                    on_result = self.on_result
                if on_result is not None:
                    on_result(result)
            elif line.startswith(_DONE):
                self.done.set()
        self.done.set()  # the process ended

    def split(self, recipe: Recipe, run_here: Callable[[Sequence[int]], list[Any]],
              on_result: Callable[[Any], None] | None = None, note: Callable[[str], None] = print) -> list[Any]:
        """Every search of `recipe`, in job order: the even positions by `run_here(positions)`, the odd
        ones by the second process (whose results also go to `on_result` as they come)."""
        total = len(recipe.optimizers) * recipe.n
        theirs = list(range(1, total, 2))
        with self.lock:
            self.results, self.on_result = {}, on_result
        self.done.clear()
        sent = self._send(Recipe(**{**asdict(recipe), "only": theirs}))
        mine = list(range(0, total, 2))
        results = dict(zip(mine, run_here(mine)))
        if sent:
            self.done.wait()
        with self.lock:
            results.update(self.results)
            self.on_result = None
        left = [i for i in theirs if i not in results]
        if left:
            note(f"the second search process stopped ({self._why()}); running its {len(left)} searches here")
            for position, result in zip(left, run_here(left)):
                results[position] = result
                if on_result is not None:
                    on_result(result)
        return [results[i] for i in range(total)]

    def _send(self, recipe: Recipe) -> bool:
        process = self.process
        if process is None or process.poll() is not None or process.stdin is None:
            return False
        try:
            process.stdin.write(json.dumps(asdict(recipe)) + "\n")
            process.stdin.flush()
            return True
        except OSError:  # it died in between
            return False

    def _why(self) -> str:
        self.errors.seek(0)
        tail = self.errors.read().decode(errors="replace").strip().splitlines()[-1:]
        code = self.process.poll() if self.process is not None else None
        return tail[0][:200] if tail else f"exit code {code}"

    def close(self) -> None:
        """Let the second process end (its stdin closes) and wait for it; it writes nothing after its last search."""
        if self.process is not None:
            if self.process.stdin is not None:
                try:
                    self.process.stdin.close()
                except OSError:
                    pass
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.errors.close()

    def __enter__(self) -> SecondProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(warm: tuple[str, float, int]) -> None:
    """The second process: load the policy, then run each recipe read from stdin."""
    import asyncio

    from trajgraph import bench
    from trajgraph.cli._common import open_db
    from trajgraph.cli._parts import load_suite, make_reward, policy_factory

    policies: dict[Any, Any] = {warm: policy_factory(warm[0], model=None, skill=warm[1], seed=warm[2])[0]}
    rewards: dict[tuple[str | None, str | None], Any] = {}
    for line in sys.stdin:
        recipe = Recipe(**json.loads(line))
        tasks = load_suite(recipe.suite).tasks(recipe.split, recipe.n, recipe.seed)
        policy_for = _policy_for(recipe, policies)
        if recipe.reward == "rm":
            from trajgraph.reward import LocalRewardModel

            if (recipe.reward_dir, recipe.reward_fast) not in rewards:
                rewards[(recipe.reward_dir, recipe.reward_fast)] = LocalRewardModel(str(recipe.reward_dir), fast=recipe.reward_fast)
            reward = rewards[(recipe.reward_dir, recipe.reward_fast)]
        else:
            reward = make_reward(recipe.reward)
        store = open_db(recipe.db, write=True)
        jobs = [(task.id, name) for name in recipe.optimizers for task in tasks]
        position_of = {jobs[i]: i for i in recipe.only}
        lock = threading.Lock()

        def report(result: Any, position_of: dict[tuple[str, str], int] = position_of, lock: threading.Lock = lock) -> None:
            with lock:  # as each search ends: the parent's progress moves with this process's
                print(_MARK + json.dumps([position_of[(result.task, result.optimizer)], asdict(result)], default=str), flush=True)

        asyncio.run(bench.run_bench(tasks, recipe.optimizers, policy_for=policy_for, reward=reward, budget=recipe.budget,
                                    store=store, concurrency=recipe.concurrency, tags=tuple(recipe.tags), on_result=report,
                                    graph_name=recipe.graph_name, repeatable=recipe.repeatable, only=recipe.only,
                                    transpositions=recipe.transpositions))
        store.close()  # every row committed before the parent reads on
        print(_DONE, flush=True)


def _policy_for(recipe: Recipe, policies: dict[Any, Any]) -> Callable[[Any], Any]:
    """policy_for(task) of the recipe's policy: the bench's by name, or a learning round's player;
    each loaded once and kept for later phases."""
    from trajgraph.cli._parts import policy_factory

    if recipe.player is None:
        key: Any = (recipe.policy, recipe.skill, recipe.seed)
        if key not in policies:
            policies[key] = policy_factory(recipe.policy, model=None, skill=recipe.skill, seed=recipe.seed)[0]
        return policies[key]
    from trajgraph.learn.demo import Player

    player = Player(**recipe.player)
    if player not in policies:
        policies[player] = player.load()
    loaded = policies[player]
    return lambda task: loaded.view()


if __name__ == "__main__":
    _policy, _skill, _seed = json.loads(sys.argv[1])
    _serve((str(_policy), float(_skill), int(_seed)))
