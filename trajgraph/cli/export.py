"""`trajgraph export sft|dpo|prm|spans`: training data and traces out of a store.

Every command takes the shared run filters (`_common.run_filters`) and its
output either as the argument or as `--out` (as `reward train`, `bench` and `demo` do).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from trajgraph.cli._common import DEFAULT_DB, Db, OutArg, OutOpt, fail, open_db, output, run_filters
from trajgraph.export.read import RunFilter

app = typer.Typer(help="Training data (TRL datasets) and traces (OpenTelemetry) out of a store.", no_args_is_help=True)

Format = Annotated[Optional[str], typer.Option("--format", help="jsonl or parquet (default: from the file suffix).")]  # noqa: UP045


def _filters(rf: RunFilter) -> dict[str, Any]:
    return {k: v for k, v in vars(rf).items() if v is not None}


def _write(kind: str, build: Callable[[], list[dict[str, Any]]], out: Path, fmt: str | None, columns: tuple[str, ...]) -> None:
    from trajgraph.export import write_dataset

    if fmt is not None and fmt not in ("jsonl", "parquet"):
        fail(f"--format {fmt!r}: give jsonl or parquet")
    rows = build()
    path = write_dataset(rows, out, format=fmt, columns=columns)
    note = "" if rows else " (nothing matched the filters)"
    typer.echo(f"wrote {len(rows)} {kind} rows to {path}{note}")


@app.command("sft")
@run_filters(status="succeeded")
def sft(
    out_arg: OutArg = None,
    out: OutOpt = None,
    db: Db = DEFAULT_DB,
    success_threshold: Annotated[float, typer.Option(help="A run with an outcome succeeds at or above this.")] = 1.0,
    any_outcome: Annotated[bool, typer.Option("--any-outcome", help="Ignore outcomes; take every run with the status.")] = False,
    fmt: Format = None,
    run_filter: RunFilter = RunFilter(),
) -> None:
    """Successful trajectories as conversational `messages` (TRL SFTTrainer)."""
    from trajgraph.export import SFT_COLUMNS, sft_dataset

    path = output(out_arg, out)
    store = open_db(db)
    threshold = None if any_outcome else success_threshold
    f = _filters(run_filter)
    status = f.pop("status", None)
    _write("SFT", lambda: sft_dataset(store, success_threshold=threshold, status=status, **f), path, fmt, SFT_COLUMNS)


@app.command("dpo")
@run_filters()
def dpo(
    out_arg: OutArg = None,
    out: OutOpt = None,
    db: Db = DEFAULT_DB,
    source: Annotated[Optional[list[str]], typer.Option(help="Only these pair sources (rro, mcts, best_of_n, trajectory, eto, ...); repeat.")] = None,  # noqa: UP045
    style: Annotated[str, typer.Option(help="conversational (message lists) or standard (text).")] = "conversational",
    no_trajectory_pairs: Annotated[bool, typer.Option("--no-trajectory-pairs", help="Skip ETO success-vs-failure pairs.")] = False,
    success_threshold: Annotated[float, typer.Option(help="ETO pairs: a run succeeds at or above this outcome.")] = 1.0,
    fmt: Format = None,
    run_filter: RunFilter = RunFilter(),
) -> None:
    """Preference pairs `prompt`/`chosen`/`rejected` (TRL DPOTrainer, RewardTrainer)."""
    from trajgraph.export import DPO_COLUMNS, dpo_dataset

    path = output(out_arg, out)
    if style not in ("conversational", "standard"):
        fail(f"--style {style!r}: give conversational or standard")
    store = open_db(db)
    if source:
        known = {"eto"} | {r["source"] for r in store.db.query("SELECT DISTINCT source FROM pairs")}
        unknown = sorted(set(source) - known)
        if unknown:
            fail(f"--source {', '.join(unknown)}: no such pair source in {store.path}; it has {', '.join(sorted(known))}")
    _write("DPO", lambda: dpo_dataset(store, sources=source or None, style=style, trajectory_pairs=not no_trajectory_pairs,
                                      success_threshold=success_threshold, **_filters(run_filter)), path, fmt, DPO_COLUMNS)


@app.command("prm")
@run_filters()
def prm(
    out_arg: OutArg = None,
    out: OutOpt = None,
    db: Db = DEFAULT_DB,
    label: Annotated[str, typer.Option(help="Label steps by node `value` (Monte Carlo) or `score` (reward model).")] = "value",
    threshold: Annotated[float, typer.Option(help="A step is good when its value/score is at least this.")] = 0.5,
    fmt: Format = None,
    run_filter: RunFilter = RunFilter(),
) -> None:
    """Stepwise supervision `prompt`/`completions`/`labels` from search trees (TRL PRMTrainer)."""
    from trajgraph.export import PRM_COLUMNS, prm_dataset

    path = output(out_arg, out)
    if label not in ("value", "score"):
        fail(f"--label {label!r}: give value or score")
    store = open_db(db)
    _write("PRM", lambda: prm_dataset(store, label=label, threshold=threshold, **_filters(run_filter)), path, fmt, PRM_COLUMNS)


@app.command("spans")
@run_filters()
def spans(
    out_arg: Annotated[Optional[str], typer.Argument(metavar="OUT", help="A .jsonl file, or an OTLP/HTTP endpoint like http://localhost:4318/v1/traces (or give --out).", show_default=False)] = None,  # noqa: UP045
    out: OutOpt = None,
    db: Db = DEFAULT_DB,
    run: Annotated[Optional[list[str]], typer.Option(help="Only these run ids (repeat).")] = None,  # noqa: UP045
    service_name: Annotated[str, typer.Option(help="OpenTelemetry service.name of the exported spans.")] = "trajgraph",
    deadline: Annotated[float, typer.Option(help="Seconds to keep retrying an endpoint that refuses spans; then exit 1.")] = 30.0,
    run_filter: RunFilter = RunFilter(),
) -> None:
    """Runs as OpenTelemetry spans (GenAI semantic conventions + OpenInference)."""
    from trajgraph.export.otel import export_spans

    if out_arg is not None and out is not None and out_arg != out:
        fail(f"two outputs given ({out_arg} and --out {out}); give the output once")
    if not math.isfinite(deadline) or deadline <= 0:
        fail(f"--deadline {deadline}: give seconds, a positive number")
    sink = out_arg if out_arg is not None else out
    if sink is not None and "://" in sink and not sink.startswith(("http://", "https://")):
        fail(f"{sink}: spans go to a .jsonl file or an http(s):// OTLP endpoint; {sink.split('://', 1)[0]}:// is not one")
    if sink is None or not sink.startswith(("http://", "https://")):
        sink = str(output(out_arg, out, what="output file or OTLP endpoint"))
    store = open_db(db)
    n = export_spans(store, sink, run_ids=run or None, service_name=service_name, deadline_s=deadline, **_filters(run_filter))
    typer.echo(f"exported {n} spans to {sink}")


__all__ = ["app"]
