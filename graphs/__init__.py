"""Ready-made agent graphs (installed as trajgraph.graphs)."""
