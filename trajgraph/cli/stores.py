"""`trajgraph store copy | prune`: move runs between stores, and keep a store from growing forever.

    trajgraph store copy runs.db postgresql://team@db/trajgraph --since 7d     # laptop -> team
    trajgraph store copy postgresql://team@db/trajgraph mine.db --tag paper   # and back
    trajgraph store prune --db runs.db --older-than 30d --keep-last 100 --dry-run

Both act on whole families (a run with the runs under it: a search and its
rollouts), see `trajgraph.store.transfer`. A copy can be repeated: what is
already there is skipped, what changed is replaced, nothing is doubled.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from trajgraph.cli._common import DEFAULT_DB, Db, open_db, print_json, run_filters
from trajgraph.export.read import RunFilter, parse_age

app = typer.Typer(help="Copy runs between stores (SQLite, PostgreSQL) and prune old ones.", no_args_is_help=True)


def duration(text: str) -> float:
    """'90m', '12h', '30d', '2w' (or plain seconds) as seconds: the same age parser as --since."""
    return parse_age("--older-than", text)


@app.command("copy")
@run_filters()
def copy_cmd(
    source: Annotated[str, typer.Argument(help="Store to copy from: a file or postgresql://…")],
    dest: Annotated[str, typer.Argument(help="Store to copy into (created if missing): a file or postgresql://…")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    run_filter: RunFilter = RunFilter(),
) -> None:
    """Copy runs (each with its steps, model calls, search tree, pairs and child runs) into another store."""
    src = open_db(source)
    dst = open_db(dest, write=True, create=True)
    from trajgraph.store.transfer import copy_runs

    wanted = {r.id for r in run_filter.runs(src)} if run_filter != RunFilter() else None
    report = copy_runs(src, dst, select=None if wanted is None else (lambda r: r.id in wanted))
    dst.close()
    counts = {k: getattr(report, k) for k in ("families", "runs", "steps", "model_calls", "search_nodes", "pairs", "skipped", "replaced")}
    if as_json:
        print_json(counts)
        return
    typer.echo(
        f"copied {report.runs} run(s) in {report.families} famil{'y' if report.families == 1 else 'ies'} "
        f"({report.steps} steps, {report.model_calls} model calls, {report.search_nodes} search nodes, {report.pairs} pairs) "
        f"from {src.path} to {dst.path}; {report.skipped} already there unchanged, {report.replaced} replaced"
    )


@app.command("prune")
def prune_cmd(
    db: Db = DEFAULT_DB,
    older_than: Annotated[str | None, typer.Option("--older-than", help="Delete runs last active longer ago than this (30d, 12h).")] = None,
    keep_last: Annotated[int | None, typer.Option("--keep-last", min=0, help="Always keep the N most recent run families.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; delete nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Delete old runs with everything recorded under them (retention)."""
    from trajgraph.store.transfer import plan_prune, prune

    store = open_db(db, write=not dry_run)
    plan = plan_prune(store, older_than=None if older_than is None else duration(older_than), keep_last=keep_last)
    deleted = 0 if dry_run else prune(store, plan)
    summary: dict[str, Any] = {"families": len(plan.families), "runs": len(plan.run_ids), "kept_families": plan.kept,
                               "deleted_runs": deleted, "dry_run": dry_run, "run_ids": plan.run_ids}
    if as_json:
        print_json(summary)
        return
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {len(plan.run_ids)} run(s) in {len(plan.families)} famil{'y' if len(plan.families) == 1 else 'ies'} "
                    f"from {store.path}; kept {plan.kept}")
