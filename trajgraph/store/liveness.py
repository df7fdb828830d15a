"""Which process is writing a run, and whether it still lives.

A run is `running` until its process says otherwise; a process killed with
SIGKILL (or a lost machine) never does. So every run a store writes as
`running` is stamped with its writer's identity in `metadata["process"]`: pid,
host, and the process's start time (pids are reused; the start time is not).
On the next writable open of the store, and whenever a run is read, a `running`
run whose process is gone (same host, and that pid is not alive or is another
process now) reads as `interrupted`, with an error that says so; the open
writes that down. Runs stamped on another host, or in another PID namespace of
this one (another container), are left as they are: their process cannot be
checked from here. A run is never marked interrupted for what an outage did:
only a process found gone counts, not a stamp that could not be written.
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Any


@functools.lru_cache(maxsize=1)
def _host() -> str:
    return socket.gethostname()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, plus the boot id (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        ticks = stat.rsplit(")", 1)[1].split()[19]  # field 22 (starttime); the name in () may hold spaces
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{f.read().strip()}:{ticks}"
    except (OSError, IndexError):
        return None


def _pid_namespace() -> str | None:
    """This process's PID namespace (Linux: "pid:[4026531836]"); pids mean something only within one."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


_ME: dict[str, Any] = {}


def this_process() -> dict[str, Any]:
    """{"pid", "host", "start", "ns"}: this process, as stamped on the runs it writes (recomputed after fork)."""
    pid = os.getpid()
    if _ME.get("pid") != pid:
        _ME.clear()
        _ME.update(pid=pid, host=_host(), start=_start_time(pid), ns=_pid_namespace())
    return dict(_ME)


def gone(process: Any) -> bool:
    """True when `process` (a stamp) ran on this host and is no longer alive; False when unsure."""
    if not isinstance(process, dict) or process.get("host") != _host():
        return False
    if process.get("ns") is not None and process.get("ns") != this_process()["ns"]:
        return False  # another container on this host: its pids are not ours to look up
    pid = process.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return process.get("start") not in (None, this_process()["start"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    start = process.get("start")
    return start is not None and _start_time(pid) not in (None, start)  # the pid now names another process


def died_message(process: dict[str, Any]) -> str:
    return (f"interrupted: its process (pid {process.get('pid')} on {process.get('host')}) ended without finishing "
            "the run (killed, or the machine stopped)")


__all__ = ["this_process", "gone", "died_message"]
