"""`trajgraph view`: a read-only local web page over a store (runs, steps, search trees)."""

from trajgraph.view.server import ViewServer, serve

__all__ = ["ViewServer", "serve"]
