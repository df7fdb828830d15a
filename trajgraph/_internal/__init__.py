"""Helpers shared across trajgraph's packages but not public (as `langgraph/_internal/`).

- `aio`: the one async-from-sync helper (`run_sync`, `OWN_LOOP`).
- `hermetic`: offline defaults for trajgraph's own entry points; the strict checkpoint serializer.
- `langgraph`: the one seam to LangGraph internals (node swap, retype, direct node call, resume key).
- `plugins`: entry-point lookup for pluggable parts (store backends, task suites, named policies).

Modules here may be imported from any trajgraph package; nothing outside trajgraph should.
"""
