"""Run a coroutine from sync code: the one async-from-sync helper the library shares.

`OWN_LOOP` is set inside an event loop that trajgraph started for itself (`search()`, an
optimized agent's sync call): only there may sync graphs be stepped inline, because on
someone else's loop (a LangGraph Server, a notebook) an inline step blocks all it serves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

OWN_LOOP: contextvars.ContextVar[bool] = contextvars.ContextVar("trajgraph_own_loop", default=False)


async def _owning(coro: Awaitable[T]) -> T:
    OWN_LOOP.set(True)
    return await coro


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, also when the caller already sits inside a running loop (then on a
    worker thread, whose exception is re-raised here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_owning(coro))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trajgraph-sync") as pool:
        return pool.submit(asyncio.run, _owning(coro)).result()
