"""`python -m trajgraph.cli`: the same as the `trajgraph` command."""

from trajgraph.cli import main

main()
