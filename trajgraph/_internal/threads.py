"""torch's own threads, shared out among searches that run side by side.

A bench or a learning round runs `concurrency` searches at once, and each runs
its own model passes (the MiniLM policy, the reward model). torch gives every
pass all of its intra-op threads, so two searches on two cores ask for four:
measured on the demo's TextWorld suite (RRO and MCTS, 6 games, 2 searches at a
time, 2 cores), about a tenth more CPU for the same searches and no faster.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def model_threads_for(concurrent: int) -> Iterator[int | None]:
    """While the block runs, give torch the cores divided by `concurrent` (at least one), then restore
    its setting. Yields the thread count used, or None when nothing changed (torch not loaded, one
    search at a time, or torch already at or below the share)."""
    torch = sys.modules.get("torch")
    if torch is None or concurrent <= 1:
        yield None
        return
    before = torch.get_num_threads()
    share = max(1, (os.cpu_count() or 1) // concurrent)
    if share >= before:
        yield None
        return
    torch.set_num_threads(share)
    try:
        yield share
    finally:
        torch.set_num_threads(before)
