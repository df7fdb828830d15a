"""The `trajgraph` command. Each group of subcommands lives beside the feature it drives."""

from __future__ import annotations

import importlib

import typer

from trajgraph._hermetic import hermetic

hermetic()

app = typer.Typer(
    name="trajgraph",
    help="Record, search, score, replay and learn from LangGraph agent trajectories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# module -> each defines `register(app: typer.Typer) -> None`
_COMMAND_MODULES = (
    "trajgraph.cli.runs",  # runs, show, replay, diff
    "trajgraph.cli.reward",  # reward train / score
    "trajgraph.cli.export",  # export, view
    "trajgraph.cli.bench",  # bench, demo
)

for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a feature not built yet, or an extra missing
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
