"""Which store class opens a given target: a path is SQLite, a `postgresql://` URL the Postgres adapter.

The adapter is found by name, with importlib, only when such a URL is opened:
core imports no adapter (and so neither psycopg), and a missing extra is one
clear line rather than an ImportError at `import trajgraph`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError

# URL scheme -> (module, class, extra)
BACKENDS = {
    "postgresql": ("trajgraph.adapters.postgres", "PostgresStore", "postgres"),
    "postgres": ("trajgraph.adapters.postgres", "PostgresStore", "postgres"),
}


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
    if scheme not in BACKENDS:
        raise ConfigError(f"{target.split('@')[-1]!r}: unknown store URL scheme {scheme!r}; give a file path or postgresql://…")
    module, name, extra = BACKENDS[scheme]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{scheme}:// stores need the {extra} extra ({exc.name} is missing); pip install 'trajgraph[{extra}]'"
        ) from None
    cls: type = getattr(mod, name)
    return cls


__all__ = ["BACKENDS", "backend_class", "scheme_of"]
