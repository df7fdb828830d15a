"""trajgraph: record, search, score, replay and learn from LangGraph agent trajectories.

`import trajgraph as tg` is light: torch, transformers and environment packages
load only where they are used.
"""

from __future__ import annotations

from trajgraph._hermetic import hermetic as _hermetic

_hermetic()

from trajgraph.errors import (  # noqa: E402
    ConfigError,
    NotAStoreError,
    ReplayError,
    RunNotFoundError,
    SchemaTooNewError,
    StoreError,
    TrajgraphError,
)
from trajgraph.record import record  # noqa: E402
from trajgraph.store import Store  # noqa: E402
from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step, Trajectory  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Store",
    "record",
    "Run",
    "Step",
    "ModelCall",
    "SearchNode",
    "PreferencePair",
    "Trajectory",
    "TrajgraphError",
    "StoreError",
    "NotAStoreError",
    "SchemaTooNewError",
    "RunNotFoundError",
    "ReplayError",
    "ConfigError",
]
