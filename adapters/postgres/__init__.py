"""The PostgreSQL store backend (extra `trajgraph[postgres]`: psycopg 3 and psycopg-pool).

`tg.Store("postgresql://...")` and `trajgraph.store.open_store(url)` come here
through the `trajgraph.stores` entry points (pyproject.toml); the core never
imports this package. `PostgresStore` runs the core's queries
(trajgraph/store/base.py) in PostgreSQL's dialect (`_schema.POSTGRES`).
"""

from trajgraph.adapters.postgres.store import PostgresStore, redact

__all__ = ["PostgresStore", "redact"]
