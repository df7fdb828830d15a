"""The PostgreSQL store backend (extra `trajgraph[postgres]`: psycopg 3 and psycopg-pool).

`tg.Store("postgresql://...")` and `trajgraph.store.open_store(url)` come here;
core never imports this package at import time (it is found by name when a
`postgresql://` URL is opened).
"""

from trajgraph.adapters.postgres.store import PostgresStore, redact

__all__ = ["PostgresStore", "redact"]
