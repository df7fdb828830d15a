"""`trajgraph train policy` and `trajgraph evolve`: learn from what searches recorded.

Errors follow the CLI contract of `trajgraph.cli` (one line; exit 2 for bad
input such as a store with nothing to train on, an unknown model folder, splits
that overlap or a missing extra; exit 1 for a failure while running).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trajgraph.cli._common import DEFAULT_DB, Db, OutArg, OutOpt, open_db, output

app = typer.Typer(no_args_is_help=True)
train_app = typer.Typer(help="Train a policy on a store's trajectories and pairs.", no_args_is_help=True)
app.add_typer(train_app, name="train")
console = Console(stderr=True)


@train_app.command("policy")
def train_policy_cmd(
    out_arg: OutArg = None,
    out: OutOpt = None,
    db: Db = DEFAULT_DB,
    method: Annotated[str, typer.Option(help="head (MiniLM + scoring head, CPU minutes), sft, dpo or sft+dpo (TRL)")] = "head",
    base: Annotated[str | None, typer.Option(help="Folder to start from (default: a fresh head / SmolLM2-135M-Instruct).")] = None,
    tag: Annotated[str | None, typer.Option(help="Only runs carrying this tag (or rollouts of searches carrying it).")] = None,
    success_threshold: Annotated[float, typer.Option(help="Outcome at which a trajectory counts as successful.")] = 1.0,
    round: Annotated[int, typer.Option("--round", help="Round number written into the card.")] = 1,
    name: Annotated[str | None, typer.Option(help="Policy name in the card (default: derived).")] = None,
    seed: int = 0,
    epochs: Annotated[int, typer.Option(help="head: passes over the data (at least --min-steps steps).")] = 30,
    features: Annotated[str, typer.Option(help="head: full (embeddings + scalars), scalars, clause (full + each command's clause of the observation), or progress (clause + where in the objective's instructions the agent is).")] = "full",
    situation: Annotated[str, typer.Option(help="head: what makes two states the same when trimming loops: observation or commands (text games).")] = "observation",
    max_steps: Annotated[int, typer.Option(help="TRL: optimizer steps.")] = 50,
    batch_size: Annotated[int, typer.Option(help="TRL: per-device batch size.")] = 2,
    max_length: Annotated[int, typer.Option(help="TRL: tokens per example.")] = 512,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: 2e-3 head, 5e-5 TRL).")] = None,
    lora: Annotated[bool, typer.Option(help="TRL: train LoRA adapters (peft) and merge them.")] = False,
) -> None:
    """Train a policy from the store into OUT (a folder with weights and a card)."""
    from trajgraph.learn import train_policy

    path = output(out_arg, out, what="policy folder", folder=True)
    store = open_db(db)
    options: dict[str, Any]
    if method == "head":
        options = {"epochs": epochs, "features": features, "situation": situation, **({"lr": lr} if lr is not None else {})}
    else:
        options = {"max_steps": max_steps, "batch_size": batch_size, "max_length": max_length, "lora": lora,
                   **({"lr": lr} if lr is not None else {})}
    with console.status(f"training ({method}) on {db}"):
        result = train_policy(store, path, method=method, base=base, tags=(tag,) if tag else (), success_threshold=success_threshold,
                              round=round, name=name, seed=seed, **options)
    card = result.card
    data = {k: v for k, v in card.get("data", {}).items() if isinstance(v, int)}
    Console().print(f"saved {result.path}  ({card.get('name')}@{str(card.get('hash'))[:12]}; "
                    f"{', '.join(f'{k} {v}' for k, v in data.items())}; {card['source_runs']['count']} source runs)")
    metrics = card.get("metrics", {})
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float))} or \
        {f"{s}.{k}": v for s, m in metrics.items() if isinstance(m, dict) for k, v in m.items() if isinstance(v, (int, float))}
    Console().print("  ".join(f"{k} {v:g}" for k, v in flat.items()))


@app.command("evolve")
def evolve_cmd(
    out_arg: OutArg = None,
    out: OutOpt = None,
    db: Annotated[str | None, typer.Option("--db", help="Store file (default: OUT/evolve.db).")] = None,
    suite: Annotated[str, typer.Option(help="Task suite: chain, frozenlake, cliffwalking, taxi, textworld.")] = "chain",
    train_tasks: Annotated[int, typer.Option(help="Tasks of the training split searched each round.")] = 8,
    tasks: Annotated[int, typer.Option(help="Tasks of the test split (disjoint) evaluated each round.")] = 10,
    rounds: Annotated[int, typer.Option(help="Most rounds of search -> train (stops when validation stops improving).")] = 2,
    val_fraction: Annotated[float, typer.Option(help="Share of the training tasks held out for validation (promotion, stopping).")] = 0.25,
    mix: Annotated[str, typer.Option(help="Training data: all rounds, or the recent round only.")] = "all",
    optimizer: Annotated[str, typer.Option(help="Search on both splits: greedy, best-of-n, rro, mcts, se-agent.")] = "best-of-n",
    budget: Annotated[int, typer.Option(help="Policy calls per task.")] = 100,
    policy: Annotated[str | None, typer.Option(help="Starting policy folder (default: an untrained MiniLM head).")] = None,
    reward_model: Annotated[str | None, typer.Option(help="Reward model folder for the search (trajgraph reward train).")] = None,
    retrain_reward: Annotated[bool, typer.Option(help="Train the next value model on each round's outcomes; the next search uses it.")] = False,
    epochs: Annotated[int, typer.Option(help="Head training passes per round.")] = 30,
    situation: Annotated[str, typer.Option(help="observation, or commands for text games (see train policy).")] = "observation",
    seed: int = 0,
    workers: Annotated[int, typer.Option(help="Searches in flight at once.")] = os.cpu_count() or 2,
) -> None:
    """Rounds of search on the training split, training on what it found, and evaluation on the test split."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trajgraph.cli.bench import load_suite
    from trajgraph.learn.evolve import evolve

    folder = Path(output(out_arg, out, what="output folder", default="evolve-out", folder=True))
    folder.mkdir(parents=True, exist_ok=True)
    store = open_db(db or str(folder / "evolve.db"), write=True, create=True)
    suite_obj = load_suite(suite)
    reward = None
    if reward_model:
        from trajgraph.reward import LocalRewardModel

        reward = LocalRewardModel(reward_model)
    with console.status(f"generating {train_tasks} training and {tasks} test tasks ({suite})"):
        train, test = suite_obj.tasks("train", train_tasks, seed), suite_obj.tasks("test", tasks, seed)

    def on_round(row: Any) -> None:
        table = Table(title=f"round {row.round}: policy {row.policy}@{str(row.policy_hash)[:12]}")
        for col in ("promoted", "train search", "trained on", "val greedy", f"val {optimizer}", f"test greedy ({len(test)})",
                    f"test {optimizer}", "wall s"):
            table.add_column(col, justify="right")
        trained = "—" if row.decisions is None else f"{row.targets} targets, {row.decisions} decisions, {row.preferences} pairs"
        table.add_row("yes" if row.promoted else "refused", "—" if row.train_search_success is None else f"{row.train_search_success:.0%}",
                      trained, f"{row.val_greedy:.0%}", f"{row.val_search:.0%}",
                      f"{row.test_greedy:.0%} ({row.test_greedy_score:.2f}, {'argmax' if row.greedy_temperature == 0 else f'T={row.greedy_temperature:g}'})",
                      f"{row.test_search:.0%} ({row.test_search_score:.2f})", f"{row.wall_s:.0f}")
        Console().print(table)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as prog:
        def bar(label: str, total: int) -> Any:
            job = prog.add_task(label, total=total)
            return lambda: prog.advance(job)

        report = evolve(train, test, store=store, out=folder, policy=policy, rounds=rounds, optimizer=optimizer, budget=budget,
                        reward=reward, retrain_reward=retrain_reward, name=suite, seed=seed, workers=workers,
                        train_options={"epochs": epochs, "situation": situation}, on_round=on_round, progress=bar,
                        val_fraction=val_fraction, mix=mix)
    summary = Table(title=f"evolve: {suite}, {optimizer} at {budget} calls/task, stopped by {report.stopped}")
    for col in ("round", "policy", "promoted", "val greedy", f"val {optimizer}", "test greedy", f"test {optimizer}"):
        summary.add_column(col, justify="right" if col != "policy" else "left")
    for row in report.rounds:
        summary.add_row(str(row.round), f"{row.policy}@{str(row.policy_hash)[:12]}", "yes" if row.promoted else "refused",
                        f"{row.val_greedy:.0%}", f"{row.val_search:.0%}", f"{row.test_greedy:.0%}", f"{row.test_search:.0%}")
    Console().print(summary)
    Console().print(f"store:  {store.path if hasattr(store, 'path') else db}\nreport: {folder / 'evolve.json'}\nplot:   {report.plot or '(matplotlib not installed)'}")


__all__ = ["app"]
