"""`trajgraph reward train` and `trajgraph reward score`."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import typer

from trajgraph.errors import TrajgraphError


def register(app: typer.Typer) -> None:
    reward = typer.Typer(help="Train and use the local reward model.", no_args_is_help=True)

    @reward.command("train")
    def train_cmd(
        db: Path = typer.Option(..., "--db", help="trajgraph store to learn from"),
        out: Path = typer.Option(..., "--out", help="directory to write the model to"),
        labels: str = typer.Option("auto", help="auto, outcome, mc, pairs (comma-separated for several)"),
        epochs: int = typer.Option(3, min=1),
        batch_size: int = typer.Option(16, min=1),
        lr: float = typer.Option(5e-5),
        seed: int = typer.Option(0),
        val_fraction: float = typer.Option(0.2, min=0.0, max=0.9),
        max_length: int = typer.Option(128, min=16),
        freeze_layers: int = typer.Option(0, min=0, help="freeze embeddings and the lowest N encoder layers"),
        threshold: float = typer.Option(0.5, help="outcome at or above which a run counts as a success"),
        backbone: Optional[Path] = typer.Option(None, help="local transformers checkpoint (default: MiniLM-L6)"),
        device: str = typer.Option("auto", help="auto, cpu, cuda"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Fit a reward model on the store's recorded trajectories, search trees and pairs."""
        from rich.console import Console

        from trajgraph.reward.train import train
        from trajgraph.store import Store

        if not db.is_file():
            _fail(f"{db}: no such store file")
        kinds = labels if labels == "auto" else [k.strip() for k in labels.split(",") if k.strip()]
        try:
            report = train(
                Store(db, readonly=True), out, backbone=backbone, labels=kinds, epochs=epochs, batch_size=batch_size,
                lr=lr, seed=seed, val_fraction=val_fraction, max_length=max_length, freeze_layers=freeze_layers,
                threshold=threshold, device=device, progress=progress,
            )
        except TrajgraphError as exc:
            _fail(str(exc))
        best = report.best
        line = f"saved {out}  ({report.n_train} train / {report.n_val} val items, {report.n_train_pairs} / {report.n_val_pairs} pairs, "
        line += f"{report.train_tasks} / {report.val_tasks} tasks, {report.seconds:.0f}s)"
        Console().print(line)
        if best is not None and best.val_auc is not None:
            Console().print(f"best epoch {best.epoch}: val AUC {best.val_auc:.3f}")

    @reward.command("score")
    def score_cmd(
        run_id: str = typer.Argument(..., help="run id or unique prefix"),
        db: Path = typer.Option(..., "--db", help="trajgraph store"),
        model: Path = typer.Option(..., "--model", help="reward model directory"),
        device: str = typer.Option("auto"),
    ) -> None:
        """Score every decision step of a recorded run (the prefix through each step's observation)."""
        from rich.console import Console
        from rich.table import Table

        from trajgraph.render import steps_to_turns
        from trajgraph.reward.base import RewardItem
        from trajgraph.reward.data import task_text
        from trajgraph.reward.local import LocalRewardModel
        from trajgraph.store import Store

        if not db.is_file():
            _fail(f"{db}: no such store file")
        try:
            store = Store(db, readonly=True)
            run = store.run(run_id)
            rm = LocalRewardModel(model, device=device)
        except TrajgraphError as exc:
            _fail(str(exc))
        turns = steps_to_turns(store.steps(run.id))
        parent = store.run(run.parent_id) if run.parent_id else None
        task = task_text(run, {r.id: r for r in (run, parent) if r is not None})
        scores = rm.score([RewardItem(task, tuple(turns[: k + 1])) for k in range(len(turns))])
        table = Table(title=f"run {run.id[:12]}  outcome {run.outcome}")
        table.add_column("step", justify="right")
        table.add_column("action")
        table.add_column("observation")
        table.add_column("score", justify="right")
        for k, ((action, obs), score) in enumerate(zip(turns, scores), 1):
            table.add_row(str(k), action[:60], obs[:60], f"{score:.3f}")
        Console().print(table)

    app.add_typer(reward, name="reward")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)
