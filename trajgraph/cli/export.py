"""`trajgraph export sft|dpo|prm|spans` and `trajgraph view`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from trajgraph.errors import TrajgraphError

Db = Annotated[Path, typer.Option("--db", help="Store file.", envvar="TRAJGRAPH_DB")]
Graph = Annotated[str | None, typer.Option(help="Only runs of this graph.")]
Tag = Annotated[str | None, typer.Option(help="Only runs with this tag.")]
Status = Annotated[str | None, typer.Option(help="Only runs with this status (running, succeeded, failed, interrupted).")]
Kind = Annotated[str | None, typer.Option(help="Only runs of this kind (record, search, rollout, ...).")]
Task = Annotated[str | None, typer.Option(help="Only runs of this task id.")]
MinOutcome = Annotated[float | None, typer.Option(help="Only runs whose outcome is at least this.")]
MaxOutcome = Annotated[float | None, typer.Option(help="Only runs whose outcome is at most this.")]
Since = Annotated[str | None, typer.Option(help="Only runs started at/after this (Unix time, ISO date, or an age like 2h, 7d).")]
Until = Annotated[str | None, typer.Option(help="Only runs started before this.")]
Format = Annotated[str | None, typer.Option("--format", help="jsonl or parquet (default: from the file suffix).")]


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Our errors are one line for people: print it, exit 1, no traceback."""
    try:
        yield
    except TrajgraphError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _filters(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def _write(kind: str, build: Callable[[], list[dict[str, Any]]], out: Path, fmt: str | None, columns: tuple[str, ...]) -> None:
    from trajgraph.export import write_dataset

    rows = build()
    path = write_dataset(rows, out, format=fmt, columns=columns)
    note = "" if rows else " (nothing matched the filters)"
    typer.echo(f"wrote {len(rows)} {kind} rows to {path}{note}")


def register(app: typer.Typer) -> None:
    export = typer.Typer(help="Training data (TRL datasets) and traces (OpenTelemetry) out of a store.", no_args_is_help=True)

    @export.command("sft")
    def sft(
        out: Annotated[Path, typer.Argument(help="Output file, .jsonl or .parquet.")],
        db: Db = Path("trajgraph.db"),
        success_threshold: Annotated[float, typer.Option(help="A run with an outcome succeeds at or above this.")] = 1.0,
        any_outcome: Annotated[bool, typer.Option("--any-outcome", help="Ignore outcomes; take every run with the status.")] = False,
        graph: Graph = None, tag: Tag = None, status: Status = "succeeded", kind: Kind = None, task: Task = None,
        min_outcome: MinOutcome = None, max_outcome: MaxOutcome = None, since: Since = None, until: Until = None,
        fmt: Format = None,
    ) -> None:
        """Successful trajectories as conversational `messages` (TRL SFTTrainer)."""
        from trajgraph.export import SFT_COLUMNS, sft_dataset

        f = _filters(graph=graph, tag=tag, kind=kind, task=task, min_outcome=min_outcome,
                     max_outcome=max_outcome, since=since, until=until)
        threshold = None if any_outcome else success_threshold
        with _one_line_errors():
            _write("SFT", lambda: sft_dataset(db, success_threshold=threshold, status=status, **f), out, fmt, SFT_COLUMNS)

    @export.command("dpo")
    def dpo(
        out: Annotated[Path, typer.Argument(help="Output file, .jsonl or .parquet.")],
        db: Db = Path("trajgraph.db"),
        source: Annotated[list[str] | None, typer.Option(help="Only these pair sources (rro, mcts, best_of_n, trajectory, eto); repeat.")] = None,
        style: Annotated[str, typer.Option(help="conversational (message lists) or standard (text).")] = "conversational",
        no_trajectory_pairs: Annotated[bool, typer.Option("--no-trajectory-pairs", help="Skip ETO success-vs-failure pairs.")] = False,
        success_threshold: Annotated[float, typer.Option(help="ETO pairs: a run succeeds at or above this outcome.")] = 1.0,
        graph: Graph = None, tag: Tag = None, status: Status = None, kind: Kind = None, task: Task = None,
        min_outcome: MinOutcome = None, max_outcome: MaxOutcome = None, since: Since = None, until: Until = None,
        fmt: Format = None,
    ) -> None:
        """Preference pairs `prompt`/`chosen`/`rejected` (TRL DPOTrainer, RewardTrainer)."""
        from trajgraph.export import DPO_COLUMNS, dpo_dataset

        f = _filters(graph=graph, tag=tag, status=status, kind=kind, task=task, min_outcome=min_outcome,
                     max_outcome=max_outcome, since=since, until=until)
        with _one_line_errors():
            _write("DPO", lambda: dpo_dataset(db, sources=source or None, style=style, trajectory_pairs=not no_trajectory_pairs,
                                              success_threshold=success_threshold, **f), out, fmt, DPO_COLUMNS)

    @export.command("prm")
    def prm(
        out: Annotated[Path, typer.Argument(help="Output file, .jsonl or .parquet.")],
        db: Db = Path("trajgraph.db"),
        label: Annotated[str, typer.Option(help="Label steps by node `value` (Monte Carlo) or `score` (reward model).")] = "value",
        threshold: Annotated[float, typer.Option(help="A step is good when its value/score is at least this.")] = 0.5,
        graph: Graph = None, tag: Tag = None, status: Status = None, kind: Kind = None, task: Task = None,
        min_outcome: MinOutcome = None, max_outcome: MaxOutcome = None, since: Since = None, until: Until = None,
        fmt: Format = None,
    ) -> None:
        """Stepwise supervision `prompt`/`completions`/`labels` from search trees (TRL PRMTrainer)."""
        from trajgraph.export import PRM_COLUMNS, prm_dataset

        f = _filters(graph=graph, tag=tag, status=status, kind=kind, task=task, min_outcome=min_outcome,
                     max_outcome=max_outcome, since=since, until=until)
        with _one_line_errors():
            _write("PRM", lambda: prm_dataset(db, label=label, threshold=threshold, **f), out, fmt, PRM_COLUMNS)

    @export.command("spans")
    def spans(
        sink: Annotated[str, typer.Argument(help="A .jsonl file, or an OTLP/HTTP endpoint like http://localhost:4318/v1/traces.")],
        db: Db = Path("trajgraph.db"),
        run: Annotated[list[str] | None, typer.Option(help="Only these run ids (repeat).")] = None,
        service_name: Annotated[str, typer.Option(help="OpenTelemetry service.name of the exported spans.")] = "trajgraph",
        graph: Graph = None, tag: Tag = None, status: Status = None, kind: Kind = None, task: Task = None,
        min_outcome: MinOutcome = None, max_outcome: MaxOutcome = None, since: Since = None, until: Until = None,
    ) -> None:
        """Runs as OpenTelemetry spans (GenAI semantic conventions + OpenInference)."""
        from trajgraph.export.otel import export_spans

        f = _filters(graph=graph, tag=tag, status=status, kind=kind, task=task, min_outcome=min_outcome,
                     max_outcome=max_outcome, since=since, until=until)
        with _one_line_errors():
            n = export_spans(db, sink, run_ids=run or None, service_name=service_name, **f)
        typer.echo(f"exported {n} spans to {sink}")

    app.add_typer(export, name="export")

    @app.command("view")
    def view(
        db: Db = Path("trajgraph.db"),
        host: Annotated[str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless you mean to share the store.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 0,
        open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in a browser.")] = False,
    ) -> None:
        """A local, read-only web page: runs, steps with model calls, search trees, comparisons."""
        from trajgraph.view.server import serve

        with _one_line_errors():
            serve(db, host, port, open_browser=open_browser)


__all__ = ["register"]
