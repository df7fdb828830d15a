"""SIGTERM during a recorded run: handled like Ctrl-C, so the run ends `interrupted` with its rows on disk.

By default SIGTERM (what `kill`, systemd, Docker and Kubernetes send) ends the
process at once: the background writer's pending rows are lost and the run
stays `running` until its death is noticed (trajgraph/store/liveness.py).
While a recorded invoke runs on the main thread, and only if SIGTERM still has
its default action (a user's own handler is left alone), trajgraph turns it into
`Terminated` (a KeyboardInterrupt) raised in the main thread: the graph unwinds
as on Ctrl-C, the run is marked interrupted and flushed, and then the process
ends by SIGTERM as it would have. A second SIGTERM kills at once. The default
action comes back when the last recorded invoke ends.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during a recorded run (see trajgraph/recording/signals.py)."""


_lock = threading.Lock()
_active = 0
_installed = False
_open: dict[int, Any] = {}  # id(session) -> session, to end every open run before the process does


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM is not delayed
    raise Terminated("SIGTERM: the recorded run was interrupted")


def enter(session: Any) -> bool:
    """A recorded invoke starts; installs the handler if this is the main thread and SIGTERM is default."""
    global _active, _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        _open[id(session)] = session
        _active += 1
        if _active == 1 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            _installed = True
    return True


def leave(session: Any) -> None:
    """A recorded invoke ended; the default action returns with the last one."""
    global _active, _installed
    with _lock:
        if _open.pop(id(session), None) is None:
            return
        _active -= 1
        if _active == 0 and _installed:
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _installed = False


def others() -> list[Any]:
    with _lock:
        return list(_open.values())


def die_by_sigterm() -> None:
    """End the process as the SIGTERM that interrupted it would have (after the runs were saved)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["Terminated", "enter", "leave", "others", "die_by_sigterm"]
