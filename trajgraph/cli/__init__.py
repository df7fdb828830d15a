"""The `trajgraph` command, composed of one module-level Typer app per command group.

Each module in `_COMMAND_MODULES` defines `app: typer.Typer`; its commands join
the root either directly (group name None: `trajgraph runs`) or under a group
(`trajgraph export sft`). Errors follow one contract for every command, enforced
by the root group (`_common.OneLineErrors`): one line on stderr, exit 2 for bad
input, 1 for a failure while running.
"""

from __future__ import annotations

import importlib

import typer

from trajgraph._internal.hermetic import hermetic
from trajgraph.cli._common import OneLineErrors, close_stores

hermetic()

app = typer.Typer(
    name="trajgraph",
    help="Record, search, score, replay and learn from LangGraph agent trajectories.",
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module, group name or None for top-level commands); each module defines `app: typer.Typer`
_COMMAND_MODULES: tuple[tuple[str, str | None], ...] = (
    ("trajgraph.cli.runs", None),  # runs, show, replay, diff
    ("trajgraph.cli.reward", "reward"),  # reward train / score
    ("trajgraph.cli.export", "export"),  # export sft / dpo / prm / spans
    ("trajgraph.cli.view", None),  # view
    ("trajgraph.cli.bench", None),  # bench, demo
    ("trajgraph.cli.learn", None),  # train policy, evolve
    ("trajgraph.cli.serve", None),  # serve (a trained model folder, OpenAI-compatible)
    ("trajgraph.cli.stores", "store"),  # store copy / prune (between SQLite and PostgreSQL; retention)
)

for _name, _group in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a feature not built yet, or an extra missing
        if exc.name != _name:
            raise
        continue
    app.add_typer(_module.app, name=_group)


def main() -> None:
    try:
        app()
    finally:
        close_stores()


if __name__ == "__main__":
    main()
