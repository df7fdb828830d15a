"""Which store class opens a target: a path is SQLite, a URL the backend registered for its scheme.

Backends register under the `trajgraph.stores` entry-point group (pyproject.toml:
`postgresql` and `postgres` name the Postgres adapter, with its extra), found
through `trajgraph._internal.plugins` only when such a URL is opened: the core
imports no adapter (and so no psycopg), and a missing extra is one line that
says what to install. A package of your own can register a scheme the same way.
"""

from __future__ import annotations

import re
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


_NETLOC_PASSWORD = re.compile(r"(://[^:/?#@\s]*):([^@\s]*)@")
_PARAM_PASSWORD = re.compile(r"(?i)\b((?:ssl)?password\s*=\s*)('[^']*'|[^&\s]*)")


def mask_url(url: str) -> str:
    """`url` with every password in it masked: `user:***@`, `?password=***` (and `sslpassword=`), and
    libpq's `password=...` keyword form; for messages, listings and `store.path`."""
    return _PARAM_PASSWORD.sub(r"\1***", _NETLOC_PASSWORD.sub(r"\1:***@", url))


def backend_class(target: Any) -> type | None:
    """The store class that opens a URL `target`; None for a file path (the SQLite store, `Store.file_backend`)."""
    scheme = scheme_of(target)
    if scheme is None:
        return None
    if scheme not in plugin_names(GROUP):
        known = ", ".join(f"{s}://" for s in plugin_names(GROUP))
        raise ConfigError(f"{mask_url(target)!r}: unknown store URL scheme {scheme!r}; give a file path or one of {known or 'none installed'}")
    cls: type = load_plugin(GROUP, scheme)
    return cls


__all__ = ["GROUP", "backend_class", "mask_url", "scheme_of"]
