"""`trajgraph runs | show | replay | diff`: look at a store from the shell.

Errors follow the CLI contract (`trajgraph.cli._common`): one line, exit 2 for
bad input, 1 for a failure while running; a replay that does not reproduce its
recording also exits 1, so CI can gate on it. `runs`, `show` and `diff` take
`--json`; written to a pipe, `runs` prints whole values, tab-separated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from trajgraph.cli._common import DEFAULT_DB, Db, on_terminal, open_db, print_json, run_filters, visible
from trajgraph.errors import SearchUnavailableError
from trajgraph.export.read import RunFilter

app = typer.Typer()

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _console() -> Console:
    """Wide enough for full run ids when the output goes to a pipe or a file."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 160))


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: Any, width: int | None = 60) -> str:
    """Stored text for rich: one line, truncated, markup escaped (a graph named `[red]` is text), and on
    a terminal with control characters shown (`visible`), never sent raw."""
    s = " ".join(str(text).split())
    s = s if width is None or len(s) <= width else s[: width - 1] + "…"
    return escape(visible(s) if on_terminal() else s)


def _num(x: float | None, fmt: str = "{:.3g}") -> str:
    return "" if x is None else fmt.format(x)


@app.command("runs")
@run_filters()
def runs_cmd(
    db: Db = DEFAULT_DB,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs, newest first.")] = 50,
    as_json: Json = False,
    search: Annotated[str | None, typer.Option(
        "--search", help="Only runs whose inputs, outputs, errors, steps (observations, actions) or model "
                         "messages hold every word of TEXT (full-text search).", metavar="TEXT")] = None,
    run_filter: RunFilter = RunFilter(),
) -> None:
    """List runs, newest first."""
    store = open_db(db)
    matches: dict[str, list[Any]] = {}
    if search is not None:
        try:
            hits = store.search(search, limit=10_000)
        except SearchUnavailableError:  # a store from before full-text search: its migration adds the index
            store = open_db(db, write=True)
            hits = store.search(search, limit=10_000)
        for hit in hits:
            matches.setdefault(hit.run_id, []).append(hit)
        runs = [r for r in select_runs(store, run_filter, None) if r.id in matches][:limit] if matches else []
    else:
        runs = select_runs(store, run_filter, limit)
    counts = store.step_counts([r.id for r in runs])
    if as_json:
        print_json([{**r.to_dict(), "steps": counts.get(r.id, 0),
                     **({"matches": [_match(h) for h in matches[r.id]]} if search is not None else {})} for r in runs])
        return
    columns: tuple[str, ...] = ("id", "started", "graph", "kind", "status", "steps", "outcome", "seconds", "tags", "parent")
    rows: list[tuple[str, ...]] = [(
        r.id, _when(r.started_at), r.graph, r.kind + (f"@{r.fork_step}" if r.fork_step is not None else ""), r.status,
        str(counts.get(r.id, 0)), _num(r.outcome), _num(r.latency_s, "{:.2f}"), ",".join(r.tags), r.parent_id or "",
    ) for r in runs]
    if search is not None:  # where it matched first: "step 3: …the wooden door…"
        columns += ("match",)
        rows = [(*row, _where(matches[r.id][0])) for row, r in zip(rows, runs)]
    console = Console()
    if not console.is_terminal:  # a pipe or a file: whole values, one run a line, so grep/cut/awk work
        for row in (columns, *rows):
            print("\t".join(" ".join(v.split()) for v in row))
    else:
        table = Table(title=f"runs in {store.path}", title_justify="left")
        for col in columns:
            table.add_column(col, justify="right" if col in ("steps", "outcome", "seconds") else "left",
                             no_wrap=col in ("id", "parent", "started"))
        colors = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
        for row in rows:
            shown = tuple(_short(v, None) for v in row)  # stored text: shown, never obeyed
            table.add_row(*shown[:4], f"[{colors.get(shown[4], 'white')}]{shown[4]}[/]", *shown[5:])
        console.print(table)
    if not runs:
        Console(stderr=True).print("no runs match")


_TABLE_WORD = {"runs": "run", "steps": "step", "model_calls": "model call", "search_nodes": "search node"}


def _match(hit: Any) -> dict[str, Any]:
    return {"table": hit.table, "key": hit.key, "column": hit.column, "snippet": hit.snippet}


def _where(hit: Any) -> str:
    place = _TABLE_WORD[hit.table] + (f" {hit.key}" if hit.key is not None else f" {hit.column}")
    return f"{place}: {_short(hit.snippet, 60)}"


def select_runs(store: Any, run_filter: RunFilter, limit: int | None) -> list[Any]:
    """Newest first; the filter (outcome bounds included) applies before the limit."""
    from trajgraph.export.read import select_runs as select

    return select(store, run_filter, limit=limit, newest_first=True)


@app.command("show")
def show_cmd(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    db: Db = DEFAULT_DB,
    tree: Annotated[bool, typer.Option("--tree", help="Draw the run's search tree.")] = False,
    width: Annotated[int, typer.Option("--width", min=10, help="Truncate actions to this many characters.")] = 70,
    as_json: Json = False,
) -> None:
    """Each step of a run: node, action, reward, latency, error."""
    from trajgraph.render import render_action, render_observation

    store = open_db(db)
    r = store.run(run)
    steps = store.steps(r.id)
    calls = store.model_calls(r.id)
    if as_json:
        data: dict[str, Any] = {"run": r.to_dict(), "steps": [s.to_dict() for s in steps], "model_calls": [c.to_dict() for c in calls]}
        if tree:
            data["search_nodes"] = [n.to_dict() for n in store.search_nodes(r.id)]
        print_json(data)
        return
    console = _console()
    head = f"[bold]{_short(r.id, None)}[/]  {_short(r.graph, None)}  {r.kind}  {r.status}"
    if r.parent_id:
        head += f"  parent {_short(r.parent_id, None)}" + (f" at step {r.fork_step}" if r.fork_step is not None else "")
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
            _short(s.node, None),
            _short("/".join(p.split(":", 1)[0] for p in s.namespace.split("|")), None) if s.namespace else "",
            text if s.interrupted else _short(text, width),
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


@app.command("replay")
def replay_cmd(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    graph: Annotated[str, typer.Option("--graph", help="The graph to replay against: module:attr or file.py:attr. "
                                       "Required: a store never chooses the code that runs.")],
    db: Db = DEFAULT_DB,
    fork_at: Annotated[Optional[int], typer.Option("--fork-at", min=0, help="Fork: answer steps before N, run N and after live.")] = None,  # noqa: UP045
    live: Annotated[bool, typer.Option("--live", help="Run every node live, models included, and compare.")] = False,
) -> None:
    """Replay a run from the store (no model called), or fork it at step N."""
    from trajgraph.replay import load_graph, replay

    store = open_db(db, write=True)
    result = replay(store, run, load_graph(graph), fork_at=fork_at, live=live)
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
    console.print(f"[yellow]first divergence at {_short(where, None)}: {_short(d.reason, None)}[/]")
    console.print(f"  expected {_short(d.expected, 160)}")
    console.print(f"  got      {_short(d.got, 160)}")
    if result.kind == "replay":
        raise typer.Exit(1)


@app.command("diff")
def diff_cmd(
    a: Annotated[str, typer.Argument(help="First run id (or prefix).")],
    b: Annotated[str, typer.Argument(help="Second run id (or prefix).")],
    db: Db = DEFAULT_DB,
    all_steps: Annotated[bool, typer.Option("--all", help="List equal steps too.")] = False,
    as_json: Json = False,
) -> None:
    """Compare two runs step by step."""
    import dataclasses

    from trajgraph.replay import diff

    store = open_db(db)
    d = diff(store, a, b)
    counts = d.counts()
    if as_json:
        print_json({"a": d.a, "b": d.b, "identical": d.identical, "output_same": d.output_same, "counts": counts,
                    "steps": [dataclasses.asdict(s) for s in d.steps if all_steps or s.status != "same"]})
        return
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
            _short(s.node, None),
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


__all__ = ["app"]
