"""Which store class opens a given target: a path is SQLite, a `postgresql://` URL the Postgres adapter.

Backends are entry points of the group `trajgraph.stores` (pyproject.toml), loaded only when
such a URL is opened: core imports no adapter (and so neither psycopg), and a missing extra
is one clear line rather than an ImportError at `import trajgraph`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trajgraph._internal.plugins import load_plugin, plugin_names
from trajgraph.errors import ConfigError

GROUP = "trajgraph.stores"


def scheme_of(target: Any) -> str | None:
    """'postgresql' for 'postgresql://…', None for a path (or 'sqlite:///path', which is SQLite)."""
    if isinstance(target, Path) or not isinstance(target, str) or "://" not in target:
        return None
    scheme = target.split("://", 1)[0].lower()
    return None if scheme == "sqlite" else scheme


def backend_class(target: Any) -> type | None:
    """The store class for a URL target, or None for an SQLite path."""
    scheme = scheme_of(target)
    if scheme is None:
        return None
    if scheme not in plugin_names(GROUP):
        raise ConfigError(f"{target.split('@')[-1]!r}: unknown store URL scheme {scheme!r}; give a file path or postgresql://…")
    cls: type = load_plugin(GROUP, scheme)
    return cls


__all__ = ["GROUP", "backend_class", "scheme_of"]
