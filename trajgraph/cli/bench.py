"""`trajgraph bench` and `trajgraph demo`: optimizers compared at equal budgets.

Suites, named policies and executors are found through entry points
(`trajgraph._internal.plugins`): the environments live in `trajgraph.adapters`, which the
core never imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trajgraph._internal.plugins import load_plugin
from trajgraph.cli._common import OutArg, OutOpt, open_db, output
from trajgraph.cli._parts import POLICIES, REWARDS, SUITES, load_suite, make_reward, policy_factory  # noqa: F401 (re-exported)
from trajgraph.errors import ConfigError

console = Console(stderr=True)
out_console = Console(width=None if Console().is_terminal else 140)

EXECUTORS = "trajgraph.executors"  # entry-point group (pyproject.toml)

DEMO: dict[str, Any] = dict(suite="textworld", train_tasks=8, tasks=20, optimizers="greedy,best-of-n,rro,mcts,se-agent",
            budget=100, policy="minilm", reward="rm", skill=0.6, seed=0)
# `trajgraph demo --quick`: the same steps on half the test games and a third of the training games
DEMO_QUICK: dict[str, Any] = dict(DEMO, tasks=10, train_tasks=4, learn_games=8, decoding_games=4)


class Phases:
    """Wall seconds of each phase of a bench or demo run (games, exploration, reward model, searches,
    baseline, learning round): printed at the end and kept in bench.json, so a slow run says where."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Any:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def line(self, total: float) -> str:
        parts = [f"{name} {secs:.0f} s" for name, secs in self.seconds.items()]
        return "time:   " + " · ".join([*parts, f"total {total:.0f} s"])


def run(suite: str, tasks: int, train_tasks: int, optimizers: str, budget: int, policy: str, model: str | None,
        reward: str, skill: float, seed: int, db: Path | str, out: Path, workers: int, title: str = "trajgraph bench",
        repeatable: bool | None = None, executor: Any = None, learn_round: bool = False,
        learning: Any = None, processes: int = 0) -> dict:
    from trajgraph import bench

    # in-process policies are seeded, so branches run in order and the table repeats;
    # a remote model samples as it likes, so its branches run concurrently (about one latency for k)
    repeatable = model is None if repeatable is None else repeatable

    names = bench.parse_optimizers(optimizers)
    if budget <= 0:
        raise ConfigError(f"--budget must be a positive number of policy calls, got {budget}")
    if tasks <= 0:
        raise ConfigError(f"--tasks must be positive, got {tasks}")
    if reward not in REWARDS:
        raise ConfigError(f"unknown reward {reward!r}; choose from {', '.join(REWARDS)}")
    suite_obj = load_suite(suite)
    started = time.time()
    with contextlib.ExitStack() as stack:
        second = None
        if _two_processes(processes, executor, model):  # started first: it loads its models while this one does
            from trajgraph.cli._shard import Recipe, SecondProcess

            second = stack.enter_context(SecondProcess(policy, skill, seed))
            base = Recipe(suite=suite, split="test", n=0, seed=seed, policy=policy, skill=skill, reward="none", reward_dir=None,
                          reward_fast=None, db=str(db), optimizers=[], budget=budget, tags=[], graph_name=suite,
                          repeatable=bool(repeatable), concurrency=workers)
        policy_for, policy_label = policy_factory(policy, model=model, skill=skill, seed=seed)
        out.mkdir(parents=True, exist_ok=True)
        store = open_db(db, write=True, create=True)
        phase = Phases()
        games = _Games(suite_obj, seed)
        with phase("games"):
            games.make("train", train_tasks)  # the first phases play these: now, on every core
            # the rest in the background, at a lower priority, while exploring and training the reward model
            games.start("test", tasks)
            if learn_round:
                games.start("train", _train_games(train_tasks, learn_round, learning))
        rm_report: dict[str, Any] = {}

        def searches(split_tasks: list[Any], split: str, optimizers: list[str], reward_kind: str, reward_obj: Any,
                     tags: tuple[str, ...], on_result: Any, transpositions: bool = True, player: Any = None,
                     player_for: Any = None) -> list[Any]:
            """Every optimizer on `split_tasks` (the first n of the split), in this process or split over two;
            with the learning round's `player` (trajgraph.learn.demo.Player) instead of the bench's policy
            when given (`player_for` runs it here)."""
            def run_here(only: Any = None) -> list[Any]:
                return asyncio.run(bench.run_bench(split_tasks, optimizers, policy_for=player_for or policy_for, reward=reward_obj,
                                                   budget=budget, store=store, concurrency=workers, on_result=on_result, tags=tags,
                                                   graph_name=suite, repeatable=repeatable or player_for is not None, executor=executor,
                                                   transpositions=transpositions, only=only))

            reward_dir = str(getattr(reward_obj, "path", "") or "") or None  # the second process loads the model from there
            if second is None or len(optimizers) * len(split_tasks) < 4 or (reward_kind == "rm" and reward_dir is None):
                return run_here()
            recipe = replace(base, split=split, n=len(split_tasks), optimizers=list(optimizers), reward=reward_kind,
                             reward_dir=reward_dir, reward_fast=getattr(reward_obj, "fast", None), tags=list(tags),
                             transpositions=transpositions, repeatable=bool(repeatable or player_for is not None),
                             player=asdict(player) if player is not None else None)
            return second.split(recipe, run_here, on_result=on_result, note=console.print)

        def train_rm() -> Any:
            from trajgraph import reward as rw

            with phase("games"):
                train_set = suite_obj.tasks("train", train_tasks, seed)
            console.print(f"exploring {len(train_set)} train tasks to collect reward-model data …")
            with _progress() as prog, phase("explore"):
                job = prog.add_task("explore (train split)", total=len(train_set) * 2)
                # transpositions off: the reward model learns from the policy's trajectories as walked, detours
                # and loops included (they are what it must score low); merged states and cut loops left it
                # 1084 examples instead of 2350 and took RRO on the demo's test games from 8/20 to 5/20
                # (benchmarks/README.md, "TextWorld gate")
                searches(train_set, "train", ["best-of-n", "mcts"], "none", None, ("train",), lambda r: prog.advance(job),
                         transpositions=False)
            rm_dir = out / "reward-model"
            # one epoch after the linear probe: AUC ~0.85 on held-out tasks in about two minutes on 2 cores;
            # a model trained before on the same data, settings and code is reused (keyed by content)
            with phase("reward model"):
                done = rw.train_or_reuse(store, rm_dir, labels="auto", seed=seed, epochs=1, progress=True)
            if done.reused:
                console.print(f"reward model: reused the one trained before on the same data and settings "
                              f"(cache {done.cache}); delete that folder to train again")
            rm_report.update({k: v for k, v in done.report.items() if isinstance(v, (int, float, str, bool, list, type(None)))})
            rm_report["reused"] = done.reused
            # fast="auto": bf16 (or another path) only where it measures faster than fp32 and ranks as fp32 does
            # (on the Xeon with AMX: 1.2x the searches per CPU-second, the same successes on 40 searches)
            return rw.LocalRewardModel(rm_dir, fast="auto")

        reward_obj = make_reward(reward, train=train_rm)
        with phase("games"):
            games.wait("test")
            with console.status(f"loading {tasks} test tasks ({suite})"):
                test = suite_obj.tasks("test", tasks, seed)
        if executor is not None and reward == "rm":  # one model for every Ray worker: the shared reward actor
            reward_obj = executor.shared_reward(str(reward_obj.path))
        results: list[Any] = []
        with _progress() as prog, phase("searches"):
            job = prog.add_task(f"search ({len(names)} optimizers × {len(test)} tasks)", total=len(names) * len(test))
            results = searches(test, "test", names, reward, reward_obj, ("test",), lambda r: prog.advance(job))
        decoding: dict[str, Any] = {}
        if "greedy" in names and not learn_round and model is None:  # the fair baseline row (issue 18): best decoding, chosen on train
            with phase("baseline"):
                names, results, decoding = _fair_greedy(names, results, suite_obj, test, policy_for, train_tasks=train_tasks,
                                                        budget=budget, store=store, seed=seed, workers=workers, graph_name=suite)
        if learn_round:  # train the MiniLM head on the training split; its rows join this table and plot (trajgraph.learn.demo)
            from trajgraph.learn.demo import demo_rows

            with phase("games"):
                games.wait("train")
            with phase("learning round"):
                def elsewhere(batch: Any, on_result: Any) -> list[Any]:  # over two processes, the second loading batch.player
                    kind, scorer = (reward, reward_obj) if batch.scored else ("none", None)
                    return searches(list(batch.tasks), batch.split, list(batch.optimizers), kind, scorer, batch.tags, on_result,
                                    player=batch.player, player_for=batch.policy_for if batch.player is not None else None)

                names, results = demo_rows(names, results, suite_obj, test, progress=_progress, base_for=policy_for, reward=reward_obj,
                                           budget=budget, store=store, out=out, seed=seed, workers=workers, graph_name=suite,
                                           settings=learning, elsewhere=elsewhere if second is not None else None)
        summaries = bench.summarise(results, names)
        curves = bench.success_curves(results, names, budget)
        report = bench.BenchReport(suite=suite, policy=policy_label, reward=reward, budget=budget, summaries=summaries, results=results,
                                   curves=curves, config=dict(suite=suite, tasks=tasks, train_tasks=train_tasks, optimizers=names,
                                                              budget=budget, policy=policy_label, reward=reward, seed=seed, repeatable=repeatable,
                                                              reward_model=rm_report, greedy_decoding=decoding, wall_s=time.time() - started,
                                                              phases_s=phase.seconds))
        data = report.to_dict()
        (out / "bench.json").write_text(json.dumps(data, indent=2, default=str))
        png = bench.plot_curves(curves, str(out / "bench.png"), f"{suite}: success vs budget (policy {model or policy}, reward {reward})")
        _print_table(report, title)
        shown = store.path  # a server URL without its password
        out_console.print(f"\nstore:  {shown}\ntable:  {out / 'bench.json'}\nplot:   {png or '(matplotlib not installed)'}")
        out_console.print(f"next:   trajgraph runs --db {shown} --kind search   ·   trajgraph show RUN --db {shown} --tree")
        out_console.print(phase.line(time.time() - started))
        return data


def _two_processes(processes: int, executor: Any, model: str | None) -> bool:
    """Split the searches over two processes (trajgraph/cli/_shard.py)? `processes` 0 means: when
    there are two cores, the policy is local and searches run here (not on Ray or a model server)."""
    if processes == 1 or executor is not None or model is not None:
        return False
    return processes >= 2 or (os.cpu_count() or 1) >= 2


def _train_games(train_tasks: int, learn_round: bool, learning: Any) -> int:
    """Training tasks the run will play: the reward model's and the fair baseline's, and the learning round's."""
    if not learn_round:
        return train_tasks
    from trajgraph.learn.demo import LearningSettings

    settings = learning if isinstance(learning, LearningSettings) else LearningSettings()
    return max(train_tasks, settings.train_games, settings.decoding_games)


class _Games:
    """The generated games of a run (suites with `prefetch`: TextWorld), made before the phases that load
    them: `make` now on every core, `start` in the background; `wait` before loading a split."""

    def __init__(self, suite: Any, seed: int) -> None:
        self.prefetch = getattr(suite, "prefetch", None)
        self.seed = seed
        self.jobs: dict[str, Any] = {}

    def make(self, split: str, n: int) -> None:
        if self.prefetch is None or n <= 0:
            return
        with console.status(f"generating the {split} split's games not cached yet ({n} wanted; cached on disk by seed)"):
            jobs = self.prefetch(split, n, self.seed, os.cpu_count() or 1)
        if jobs.missing:
            console.print(f"generated {jobs.missing} {split} games (cached for the next run)")

    def start(self, split: str, n: int) -> None:
        if self.prefetch is None or n <= 0:
            return
        jobs = self.prefetch(split, n, self.seed, 1, background=True)
        self.jobs[split] = jobs
        if jobs.missing:
            console.print(f"generating {jobs.missing} {split} games in the background (cached for the next run)")

    def wait(self, split: str) -> None:
        jobs = self.jobs.pop(split, None)
        if jobs is not None:
            with console.status(f"waiting for the {split} split's games"):
                jobs.wait()


def _fair_greedy(names: list[str], results: list[Any], suite_obj: Any, test: Any, policy_for: Any, *, train_tasks: int, budget: int,
                 store: Any, seed: int, workers: int, graph_name: str) -> tuple[list[str], list[Any], dict[str, Any]]:
    """Label the sampled greedy row with its temperature and add the policy at its best decoding,
    chosen on `train_tasks` training tasks (a policy without a temperature is left as it is)."""
    import copy

    from trajgraph import bench
    from trajgraph.learn.baseline import best_decoding

    shared = getattr(policy_for, "policy", None)
    own = getattr(shared, "temperature", None)
    if shared is None or not isinstance(own, (int, float)) or train_tasks <= 0:
        return names, results, {}

    def at(t: float) -> Any:
        other = copy.copy(shared)
        other.temperature = t
        return other

    train = suite_obj.tasks("train", train_tasks, seed)
    with console.status(f"choosing the greedy baseline's decoding on {len(train)} training tasks"):
        decoding = best_decoding(train, at, budget=budget, workers=workers, graph_name=graph_name)
    sampled = "greedy" if own == 0 else f"greedy (sampled, T={own:g})"
    fair = f"greedy · best decoding ({decoding.label()}, chosen on train)"
    extra = asyncio.run(bench.run_bench(test, ["greedy"], policy_for=lambda task: at(decoding.temperature).view(), budget=budget,
                                        store=store, concurrency=workers, tags=("test",), graph_name=graph_name, repeatable=True))
    for r in results:
        if r.optimizer == "greedy":
            r.optimizer = sampled
    for r in extra:
        r.optimizer = fair
    return [sampled if n == "greedy" else n for n in names] + [fair], results + extra, decoding.to_dict()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def _print_table(report: Any, title: str) -> None:
    table = Table(title=f"{title}: {report.suite}, policy {report.policy}, reward {report.reward}, budget {report.budget} policy calls/task")
    for col in ("optimizer", "success", "95% CI", "mean score", "calls spent", "overrun", "unfinished", "cand./step", "env steps", "wall s"):
        table.add_column(col, justify="right" if col != "optimizer" else "left")
    for s in report.summaries:
        table.add_row(s.optimizer, f"{s.success_rate:.0%} ({round(s.success_rate * s.tasks)}/{s.tasks})", f"{s.ci_low:.0%}–{s.ci_high:.0%}",
                      f"{s.mean_score:.2f}", f"{s.policy_calls:.1f}", f"{s.overrun_policy_calls:.1f}", str(s.unfinished), f"{s.candidates_per_step:.2f}", f"{s.env_steps:.1f}", f"{s.wall_s:.2f}")
    out_console.print(table)


app = typer.Typer()


@app.command("bench")
def bench_cmd(
    out_arg: OutArg = None,
    suite: str = typer.Option("chain", help="task suite: chain, frozenlake, cliffwalking, taxi, textworld (entry points 'trajgraph.suites')"),
    tasks: int = typer.Option(10, min=1, help="test tasks"),
    train_tasks: int = typer.Option(6, min=1, help="train tasks (reward-model data, disjoint from test)"),
    optimizers: str = typer.Option("greedy,best-of-n,rro,mcts,se-agent", help="comma-separated"),
    budget: int = typer.Option(24, min=1, help="policy calls per task, equal for every optimizer"),
    policy: str = typer.Option("simulated", help="offline policy: simulated, minilm, smollm2, smollm2-rank (entry points 'trajgraph.policies')"),
    model: str = typer.Option(None, help="a litellm model name; overrides --policy"),
    reward: str = typer.Option("none", help=f"process reward for unfinished states: {', '.join(REWARDS)}"),
    skill: float = typer.Option(0.6, min=0.0, max=1.0, help="skill of the simulated policy, 0 to 1"),
    seed: int = typer.Option(0),
    db: Optional[str] = typer.Option(None, "--db", help="store file (default: OUT/bench.db)"),  # noqa: UP045 (typer reads it)
    out: OutOpt = None,
    workers: int = typer.Option(os.cpu_count() or 2, min=1, help="searches in flight at once"),
    repeatable: Optional[bool] = typer.Option(None, "--repeatable/--concurrent-branches",  # noqa: UP045 (typer reads it)
                                    help="branches of a search in order (same seed, same table) or concurrently; "
                                         "default: in order for offline policies, concurrently with --model"),
    executor: str = typer.Option("local", help="where searches run: local (this process) or ray (one Ray actor per worker)"),
    processes: int = typer.Option(0, min=0, max=2, help="local searches split over 2 processes (one per core; the same table) "
                                  "or kept in 1; 0: 2 where there are 2 cores and the policy is local"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (auto, host:port); "  # noqa: UP045
                                              "default: a local Ray"),
) -> None:
    """Compare optimizers at equal policy-call budgets on a task suite; write OUT/bench.json and bench.png (OUT: bench-out)."""
    folder = output(out_arg, out, what="output folder", default="bench-out", folder=True)
    runner = make_executor(executor, ray_address, workers)  # before anything is written: a bad cluster writes nothing
    run(suite, tasks, train_tasks, optimizers, budget, policy, model, reward, skill, seed,
        db if db else folder / "bench.db", folder, workers, repeatable=repeatable, executor=runner, processes=processes)


def make_executor(kind: str, address: str | None, workers: int) -> Any:
    """None for the local executor; a connected executor (entry-point group `trajgraph.executors`:
    `ray` is adapters/ray_executor.py) otherwise."""
    if kind == "local":
        if address:
            raise ConfigError("--ray-address needs --executor ray")
        return None
    runner = load_plugin(EXECUTORS, kind)(workers=workers, address=address)
    runner.connect()
    return runner


@app.command("demo")
def demo_cmd(
    out_arg: OutArg = None,
    out: OutOpt = None,
    model: str = typer.Option(None, help="run the same demo with a litellm model"),
    quick: bool = typer.Option(False, "--quick", help="the same steps on 10 test games and fewer training games "
                                                      "(about half the time; a smaller, noisier table)"),
) -> None:
    """The offline demo: every optimizer on generated TextWorld games with a real small model (OUT: demo-out)."""
    folder = output(out_arg, out, what="output folder", default="demo-out", folder=True)
    cfg = dict(DEMO_QUICK if quick else DEMO)
    learning = None  # the learning round's own defaults; --quick explores and chooses the baseline on fewer games
    if quick:
        from trajgraph.learn.demo import LearningSettings

        learning = LearningSettings(train_games=cfg["learn_games"], decoding_games=cfg["decoding_games"])
    run(cfg["suite"], cfg["tasks"], cfg["train_tasks"], cfg["optimizers"], cfg["budget"], cfg["policy"], model,
        cfg["reward"], cfg["skill"], cfg["seed"], folder / "demo.db", folder, os.cpu_count() or 2,
        title="trajgraph demo --quick" if quick else "trajgraph demo", learn_round=model is None, learning=learning)


__all__ = ["app", "run"]
