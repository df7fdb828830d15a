"""`trajgraph reward train` and `trajgraph reward score`.

`train`'s options are the fields of `trajgraph.reward.RewardTrainConfig`, read
from the dataclass (`_common.config_options`): one declaration for the function
and the command.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from trajgraph.cli._common import DEFAULT_DB, Db, OutArg, OutOpt, config_options, open_db, output, print_json
from trajgraph.reward.train import RewardTrainConfig  # light: torch loads inside train()

app = typer.Typer(help="Train and use the local reward model.", no_args_is_help=True)


@app.command("train")
@config_options(RewardTrainConfig)
def train_cmd(
    out_arg: OutArg = None,
    out: OutOpt = None,
    db: Db = DEFAULT_DB,
    config: RewardTrainConfig | None = None,
) -> None:
    """Fit a reward model on the store's recorded trajectories, search trees and pairs; save it to OUT (a folder)."""
    from trajgraph.reward.train import train

    path = output(out_arg, out, what="model folder", folder=True)
    store = open_db(db)
    report = train(store, path, config)
    best = report.best
    line = f"saved {path}  ({report.n_train} train / {report.n_val} val items, {report.n_train_pairs} / {report.n_val_pairs} pairs, "
    line += f"{report.train_tasks} / {report.val_tasks} tasks, {report.seconds:.0f}s)"
    Console().print(line)
    if best is not None and best.val_auc is not None:
        Console().print(f"best epoch {best.epoch}: val AUC {best.val_auc:.3f}")


@app.command("score")
def score_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id or unique prefix.")],
    model: Annotated[str, typer.Option("--model", help="Reward model folder.")],
    db: Db = DEFAULT_DB,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score every decision step of a recorded run (the prefix through each step's observation)."""
    from rich.table import Table

    from trajgraph.render import steps_to_turns
    from trajgraph.reward.base import RewardItem
    from trajgraph.reward.data import task_text
    from trajgraph.reward.local import LocalRewardModel

    store = open_db(db)
    run = store.run(run_id)
    rm = LocalRewardModel(model, device=device)
    turns = steps_to_turns(store.steps(run.id))
    parent = store.run(run.parent_id) if run.parent_id else None
    task = task_text(run, {r.id: r for r in (run, parent) if r is not None})
    scores = rm.score([RewardItem(task, tuple(turns[: k + 1])) for k in range(len(turns))])
    if as_json:
        print_json({"run": run.id, "outcome": run.outcome, "steps": [
            {"step": k, "action": a, "observation": o, "score": s} for k, ((a, o), s) in enumerate(zip(turns, scores), 1)]})
        return
    table = Table(title=f"run {run.id[:12]}  outcome {run.outcome}")
    table.add_column("step", justify="right")
    table.add_column("action")
    table.add_column("observation")
    table.add_column("score", justify="right")
    for k, ((action, obs), score) in enumerate(zip(turns, scores), 1):
        table.add_row(str(k), action[:60], obs[:60], f"{score:.3f}")
    Console().print(table)


__all__ = ["app"]
