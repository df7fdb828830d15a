"""Recording: wrap an unmodified compiled graph so every step lands in a store.

- `record.py`: `record(graph, store=...)`, the recorded graph and its sessions;
- `_instrument.py`: the node swap that sees each step's input, output and timing;
- `_callbacks.py`: LangChain callback handlers for model calls and tokens;
- `_nested.py`: graphs that a node's own function invokes.
"""

from trajgraph.recording.record import DEFAULT_DECISION_NODES, record

__all__ = ["record", "DEFAULT_DECISION_NODES"]
