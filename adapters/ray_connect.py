"""Joining Ray: one place for the executor and the reward actor (a bad address is one line, quickly)."""

from __future__ import annotations

import socket
from typing import Any

from trajgraph.errors import ConfigError


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"the Ray executor needs the ray extra ({exc.name} is missing); pip install 'trajgraph[ray]'") from None
    return ray


def connect(address: str | None = None, **init_kwargs: Any) -> Any:
    """`ray`, initialised: joined to the cluster at `address` ('auto', 'host:port', 'ray://host:port'),
    or a local instance when None. No cluster there: one ConfigError line, quickly."""
    ray = import_ray()
    if address not in (None, "", "auto", "local"):
        _reachable(address)  # even when this process already has a Ray: the address given must answer
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"no Ray cluster at {address}: {' '.join(str(exc).split())[:200]}; "
                          "start one with `ray start --head`, or leave out --ray-address for a local one") from None
    return ray


def _reachable(address: str) -> None:
    """Ray waits a minute or more for a GCS that is not there; a plain TCP connect says so in seconds."""
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: give auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster at {address}: cannot connect ({exc.strerror or exc}); "
                          "start one with `ray start --head`, or leave out --ray-address for a local one") from None
