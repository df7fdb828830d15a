"""`trajgraph view`: the local, read-only web page over a store (trajgraph/view)."""

from __future__ import annotations

from typing import Annotated

import typer

from trajgraph.cli._common import DEFAULT_DB, Db, fail, open_db

app = typer.Typer()


@app.command("view")
def view(
    db: Db = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless you mean to share the store.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 0,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in a browser.")] = False,
) -> None:
    """A local, read-only web page: runs, steps with model calls, search trees, comparisons."""
    from trajgraph.view.server import serve

    if "://" in db and not db.startswith("sqlite:///"):
        fail(f"{db.split('://')[0]}:// store: the viewer reads SQLite files; copy the runs into one first "
             "(trajgraph store copy URL runs.db) and view that")
    path = db.removeprefix("sqlite:///")
    open_db(path).close()  # the same checks as every command: a missing, foreign or too-new file is one line
    serve(path, host, port, open_browser=open_browser)


__all__ = ["app"]
