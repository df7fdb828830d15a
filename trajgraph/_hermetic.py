"""Environment defaults that keep trajgraph offline unless a user opts in."""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import Any


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


_LITELLM: Any = None


async def alitellm() -> Any:
    """litellm, imported off the event loop the first time (its import reads hundreds of files and
    a .env: seconds during which a server's loop would answer nothing), offline as `hermetic` sets it."""
    global _LITELLM
    if _LITELLM is None:
        hermetic()
        _LITELLM = await asyncio.to_thread(importlib.import_module, "litellm")
    return _LITELLM
