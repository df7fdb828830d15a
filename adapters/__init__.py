"""Environment and store adapters (installed as trajgraph.adapters). Core never imports these."""
