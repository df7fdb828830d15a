"""`trajgraph runs | show | replay | diff`: look at a store from the shell.

Every failure a user can cause (a bad argument, a missing run or file, a file
that is not a store) ends as one line on stderr and exit code 2; a replay that
does not reproduce its recording exits 1, so CI can gate on it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from trajgraph.errors import ConfigError, StoreError, TrajgraphError

try:  # typer >= 0.24 vendors click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer on real click
    from click.exceptions import UsageError  # type: ignore[assignment]

_DB_HELP = "store file (default: $TRAJGRAPH_DB or ./trajgraph.db)"


class _OneLineErrors(typer.core.TyperCommand):
    """Usage errors as one line (`trajgraph show: Missing argument 'RUN'.`), exit code 2."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            _fail(f"trajgraph {self.name}: {exc.format_message()}")
            raise AssertionError from None  # unreachable: _fail exits


def _fail(message: str) -> None:
    print(" ".join(str(message).split()), file=sys.stderr)  # one line, whatever the message held
    raise typer.Exit(2)


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn trajgraph's typed errors into the one-line exit-2 contract."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TrajgraphError as exc:
            _fail(f"trajgraph: {exc}")

    return wrapper


def _store(db: Optional[str], *, write: bool = False) -> Any:
    from trajgraph.store import Store

    path = Path(db or os.environ.get("TRAJGRAPH_DB") or "trajgraph.db")
    if not path.exists():
        raise StoreError(f"{path}: no such store file; record a run first or pass --db")
    return Store(path, readonly=not write).setup()


def _since(text: Optional[str]) -> Optional[float]:
    """'90m', '2h', '3d', '1w', an ISO date/time, or epoch seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return time.time() - float(m.group(1)) * unit
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(f"--since {text!r}: give 30m, 2h, 3d, 1w, an ISO date/time or epoch seconds") from None


def _console() -> Console:
    """Wide enough for full run ids when the output goes to a pipe or a file."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 160))


def _when(ts: Optional[float]) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: Any, width: int = 60) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


def _num(x: Optional[float], fmt: str = "{:.3g}") -> str:
    return "" if x is None else fmt.format(x)


def runs_cmd(
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    graph: Optional[str] = typer.Option(None, "--graph", help="only runs of this graph name"),
    status: Optional[str] = typer.Option(None, "--status", help="running, succeeded, failed or interrupted"),
    tag: Optional[str] = typer.Option(None, "--tag", help="only runs with this tag"),
    kind: Optional[str] = typer.Option(None, "--kind", help="record, replay, fork, search, rollout, bench"),
    since: Optional[str] = typer.Option(None, "--since", help="30m, 2h, 3d, an ISO date or epoch seconds"),
    limit: int = typer.Option(50, "--limit", min=1, help="at most this many runs, newest first"),
) -> None:
    """List runs, newest first."""
    store = _store(db)
    runs = store.runs(graph=graph, status=status, tag=tag, kind=kind, since=_since(since), limit=limit)
    counts = store.step_counts([r.id for r in runs])
    table = Table(title=f"runs in {store.path}", title_justify="left")
    for col in ("id", "started", "graph", "kind", "status", "steps", "outcome", "seconds", "tags", "parent"):
        table.add_column(col, justify="right" if col in ("steps", "outcome", "seconds") else "left", no_wrap=col in ("id", "parent", "started"))
    colors = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
    for r in runs:
        table.add_row(
            r.id,
            _when(r.started_at),
            r.graph,
            r.kind + (f"@{r.fork_step}" if r.fork_step is not None else ""),
            f"[{colors.get(r.status, 'white')}]{r.status}[/]",
            str(counts.get(r.id, 0)),
            _num(r.outcome),
            _num(r.latency_s, "{:.2f}"),
            ",".join(r.tags),
            r.parent_id or "",
        )
    _console().print(table)
    if not runs:
        Console(stderr=True).print("no runs match")


def show_cmd(
    run: str = typer.Argument(..., help="run id or a unique prefix of it"),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    tree: bool = typer.Option(False, "--tree", help="draw the run's search tree"),
    width: int = typer.Option(70, "--width", min=10, help="truncate actions to this many characters"),
) -> None:
    """Each step of a run: node, action, reward, latency, error."""
    from trajgraph.render import render_action, render_observation

    store = _store(db)
    r = store.run(run)
    steps = store.steps(r.id)
    calls = store.model_calls(r.id)
    console = _console()
    head = f"[bold]{r.id}[/]  {r.graph}  {r.kind}  {r.status}"
    if r.parent_id:
        head += f"  parent {r.parent_id}" + (f" at step {r.fork_step}" if r.fork_step is not None else "")
    console.print(head)
    console.print(f"started {_when(r.started_at)}  steps {len(steps)}  model calls {len(calls)}  outcome {_num(r.outcome) or '-'}")
    if r.error:
        console.print(f"[red]error[/] {_short(r.error, 200)}")
    table = Table(show_lines=False)
    for col in ("seq", "node", "ns", "action / update", "reward", "ms", "error"):
        table.add_column(col, justify="right" if col in ("seq", "reward", "ms") else "left", overflow="fold")
    for s in steps:
        text = render_action(s.action) if s.action is not None else render_observation(s.update)
        if s.interrupted:
            text = "[yellow](interrupted)[/]"
        table.add_row(
            str(s.seq),
            s.node,
            "/".join(p.split(":", 1)[0] for p in s.namespace.split("|")) if s.namespace else "",
            _short(text, width),
            _num(s.reward),
            f"{s.latency_ms:.1f}",
            f"[red]{_short(s.error, 50)}[/]" if s.error else "",
        )
    console.print(table)
    if tree:
        nodes = store.search_nodes(r.id)
        if not nodes:
            console.print("no search tree recorded for this run")
            return
        console.print(_search_tree(nodes))


def _search_tree(nodes: list[Any]) -> Tree:
    children: dict[Any, list[Any]] = {}
    for n in nodes:
        children.setdefault(n.parent_id, []).append(n)

    def label(n: Any) -> str:
        parts = [f"#{n.id}", _short(n.action_text or ("(root)" if n.parent_id is None else ""), 50)]
        for name, value in (("score", n.score), ("value", n.value), ("outcome", n.outcome)):
            if value is not None:
                parts.append(f"{name}={value:.3g}")
        parts.append(f"visits={n.visits}")
        text = " ".join(p for p in parts if p)
        if n.invalid:
            return f"[dim red]{text} (invalid)[/]"
        if n.chosen:
            return f"[bold green]★ {text}[/]"
        return text + (" [dim](terminal)[/]" if n.terminal else "")

    roots = [n for n in nodes if n.parent_id is None or n.parent_id not in {m.id for m in nodes}]
    top = Tree(f"search tree ({len(nodes)} nodes; ★ chosen)")
    stack = [(top, n) for n in reversed(roots)]
    while stack:  # iterative: search trees can be deeper than Python's recursion limit
        parent, n = stack.pop()
        branch = parent.add(label(n))
        stack.extend((branch, c) for c in reversed(children.get(n.id, [])))
    return top


def replay_cmd(
    run: str = typer.Argument(..., help="run id or a unique prefix of it"),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    graph: Optional[str] = typer.Option(None, "--graph", help="module:attr or file.py:attr (default: the run's graph_path)"),
    fork_at: Optional[int] = typer.Option(None, "--fork-at", min=0, help="fork: answer steps before N, run N and after live"),
    live: bool = typer.Option(False, "--live", help="run every node live, models included, and compare"),
) -> None:
    """Replay a run from the store (no model called), or fork it at step N."""
    from trajgraph.replay import load_graph, replay

    store = _store(db, write=True)
    target = load_graph(graph) if graph else None
    result = replay(store, run, target, fork_at=fork_at, live=live)
    console = _console()
    what = "fork" if result.kind == "fork" else "replay"
    console.print(f"{what} {result.run_id} of {result.parent_id}: {result.status}, {result.steps} steps compared, {result.answered} answered from the record")
    if result.error:
        console.print(f"[red]error[/] {_short(result.error, 200)}")
    d = result.divergence
    if d is None:
        console.print("[green]matches the recording step by step[/]")
        return
    where = "output" if d.seq is None else f"step {d.seq} ({d.node})"
    console.print(f"[yellow]first divergence at {where}: {d.reason}[/]")
    console.print(f"  expected {_short(d.expected, 160)}")
    console.print(f"  got      {_short(d.got, 160)}")
    if result.kind == "replay":
        raise typer.Exit(1)


def diff_cmd(
    a: str = typer.Argument(..., help="first run id (or prefix)"),
    b: str = typer.Argument(..., help="second run id (or prefix)"),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    all_steps: bool = typer.Option(False, "--all", help="list equal steps too"),
) -> None:
    """Compare two runs step by step."""
    from trajgraph.replay import diff

    store = _store(db)
    d = diff(store, a, b)
    counts = d.counts()
    console = _console()
    console.print(f"{d.a} vs {d.b}: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ("" if d.output_same else "; outputs differ"))
    table = Table()
    for col in ("a", "b", "node", "", "a update", "b update"):
        table.add_column(col, overflow="fold")
    marks = {"same": "=", "changed": "[yellow]~[/]", "only_a": "[red]-[/]", "only_b": "[green]+[/]"}
    for s in d.steps:
        if s.status == "same" and not all_steps:
            continue
        table.add_row(
            "" if s.a_seq is None else str(s.a_seq),
            "" if s.b_seq is None else str(s.b_seq),
            s.node,
            marks[s.status],
            _short(s.a_error or (_text(s.a_update) if s.a_seq is not None else ""), 50),
            _short(s.b_error or (_text(s.b_update) if s.b_seq is not None else ""), 50),
        )
    console.print(table)
    if d.identical:
        console.print("[green]identical[/]")


def _text(update: Any) -> str:
    from trajgraph.render import render_action, render_observation

    if isinstance(update, dict) and "observation" in update:
        return render_observation(update)
    return render_action(update)


def register(app: typer.Typer) -> None:
    """Add runs/show/replay/diff to the `trajgraph` app."""
    for name, fn in (("runs", runs_cmd), ("show", show_cmd), ("replay", replay_cmd), ("diff", diff_cmd)):
        app.command(name, cls=_OneLineErrors)(_friendly(fn))


__all__ = ["register"]
