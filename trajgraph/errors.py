"""Typed errors. Each message is one line that names the thing and what to do."""

from __future__ import annotations


class TrajgraphError(Exception):
    """Base class for every error trajgraph raises on purpose."""


class StoreError(TrajgraphError):
    """A store file cannot be opened or used."""


class NotAStoreError(StoreError):
    """The file exists but is not a trajgraph store (or is corrupt)."""


class SchemaTooNewError(StoreError):
    """The store was written by a newer trajgraph than this one."""


class StoreUnavailableError(StoreError):
    """The store's server stayed unreachable past the write deadline (nothing of the batch was written)."""


class SearchUnavailableError(StoreError):
    """The store predates full-text search and is open read-only: a writable open migrates it."""


class RunNotFoundError(TrajgraphError, KeyError):
    """No run with that id (or id prefix) in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "run not found"


class ReplayError(TrajgraphError):
    """A recorded run cannot be replayed against the given graph."""


class ForkError(TrajgraphError):
    """An environment or graph cannot be branched the way a search needs."""


class BudgetError(TrajgraphError, ValueError):
    """A budget that allows no work at all, or a negative limit."""


class ConfigError(TrajgraphError, ValueError):
    """Bad user configuration: unknown optimizer, missing extra, bad argument."""


class GraphError(ConfigError, TypeError):
    """What was passed as a graph is not a LangGraph graph, or lacks the named node."""


class InputError(ConfigError):
    """A graph's input is missing a key, has an unknown one, or a value of the wrong type."""


class RewardModelError(TrajgraphError):
    """A reward model directory is missing files or holds something else."""


class ExportError(TrajgraphError):
    """Exported data (spans) did not reach its destination before the deadline."""


__all__ = [
    "SearchUnavailableError",
    "StoreUnavailableError",
    "TrajgraphError",
    "StoreError",
    "NotAStoreError",
    "SchemaTooNewError",
    "RunNotFoundError",
    "ReplayError",
    "ForkError",
    "BudgetError",
    "ConfigError",
    "GraphError",
    "InputError",
    "RewardModelError",
    "ExportError",
]
