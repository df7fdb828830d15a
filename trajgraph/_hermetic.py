"""Environment defaults that keep trajgraph offline unless a user opts in."""

from __future__ import annotations

import os


def hermetic() -> None:
    """litellm fetches a price list at import unless told not to; HF must not download."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # LangGraph's msgpack serializer revives arbitrary types unless strict.
    os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
    # torch's spinning OpenMP threads slow small models 10x on a shared 2-core box;
    # only takes effect if set before torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
