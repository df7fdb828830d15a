"""Pluggable parts found through Python entry points, so the core imports no adapter.

Groups (declared in pyproject.toml; a user's own package can add names to any of them):

- `trajgraph.stores`: URL scheme -> store class (`postgresql` -> the Postgres adapter);
- `trajgraph.suites`: `--suite` name -> task-suite class (`textworld`, `frozenlake`, ...);
- `trajgraph.policies`: `--policy` name -> policy factory `(seed=, skill=) -> policy`;
- `trajgraph.executors`: `--executor` name -> executor class (`ray`).

An entry point names the extra that brings its dependencies (`module:attr [extra]`), so a
missing package is one line that says what to install.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from trajgraph.errors import ConfigError

GROUPS = ("trajgraph.stores", "trajgraph.suites", "trajgraph.policies", "trajgraph.executors")
_WHAT = {"trajgraph.stores": "store backend", "trajgraph.suites": "suite", "trajgraph.policies": "policy",
         "trajgraph.executors": "executor"}


@cache
def _points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def plugin_names(group: str) -> list[str]:
    """The names registered in `group`, sorted."""
    return sorted(_points(group))


def load_plugin(group: str, name: str) -> Any:
    """The object registered as `name` in `group`; ConfigError naming the choices or the extra to install."""
    points = _points(group)
    what = _WHAT.get(group, group)
    if name not in points:
        known = ", ".join(sorted(points)) or "none (is trajgraph installed? pip install -e .)"
        raise ConfigError(f"unknown {what} {name!r}; choose from {known}")
    point = points[name]
    try:
        return point.load()
    except ImportError as exc:
        extras = ",".join(point.extras)
        hint = f"pip install 'trajgraph[{extras}]'" if extras else "reinstall trajgraph"
        raise ConfigError(f"{what} {name!r} needs a missing package ({exc.name}); {hint}") from None
