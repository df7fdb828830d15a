"""Outside services the tests start once per session: a throwaway PostgreSQL and one local Ray.

PostgreSQL: Debian's `postgresql` package (`initdb` + `pg_ctl`), a cluster in a
temporary folder listening only on a Unix socket there, run as the `postgres`
user when the tests run as root (Postgres refuses root; PyPI's
`testing.postgresql` and `pytest-postgresql` refuse it too). fsync is off: the
data dies with the session. `TRAJGRAPH_TEST_POSTGRES_URL` points the tests at a
server of your own instead. Each store a test makes gets a fresh schema
(`PostgresStore(url, schema=...)`), which costs a fraction of a millisecond
where a database costs ~150 ms.

These tests do not skip: when the server cannot start (no `postgresql`
package, a failed initdb), the fixture fails with the reason, so CI stays red
until setup installs it (scripts/setup.sh does, as root).

Ray: one local instance (`num_cpus=2`, dashboard off), started by the first
test that asks for it and shut down at the end of the session.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV_URL = "TRAJGRAPH_TEST_POSTGRES_URL"


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} is not installed: run scripts/setup.sh as root (it installs Debian's postgresql), "
                    f"or set {ENV_URL} to a server of your own", pytrace=False)
    return found


class Postgres:
    """A running server: `url` to connect, `store(...)` for a fresh store in its own schema."""

    def __init__(self, url: str, stop: Any = None, outage: Any = None) -> None:
        self.url = url
        self._stop = stop
        self._outage = outage
        self._names = itertools.count()
        self._prefix = f"t{os.getpid()}_"
        self.made: list[Any] = []

    def schema(self) -> str:
        return f"{self._prefix}{next(self._names)}"

    def store(self, **kwargs: Any) -> Any:
        from trajgraph.adapters.postgres import PostgresStore

        store = PostgresStore(self.url, schema=self.schema(), **kwargs).setup()
        self.made.append(store)
        return store

    def close_stores(self) -> None:
        """Close the stores made so far (a pool dropped unclosed may be collected on its own worker thread)."""
        while self.made:
            self.made.pop().close()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()

    def outage(self, seconds: float, down: threading.Event | None = None) -> None:
        """Stop the server (pg_ctl stop -m fast: every connection dropped), set `down`, wait `seconds`, start it again."""
        if self._outage is None:
            pytest.skip(f"an outage needs the throwaway server; ${ENV_URL} points at a server of your own")
        self._outage(seconds, down)


def start_postgres(base: Path) -> Postgres:
    """initdb + pg_ctl start on a Unix socket in `base`; raises with the reason when it cannot."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres will not run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no `postgres` user to run PostgreSQL as; install Debian's postgresql",
                        pytrace=False)
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"

    def sh(*cmd: str) -> None:
        done = subprocess.run([*run_as, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            pytest.fail(f"could not start the test PostgreSQL: {' '.join(cmd[:1])} failed: {' | '.join(tail)}", pytrace=False)

    sh(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
    options = f"-k {base} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    sh(pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")

    def stop() -> None:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)

    def outage(seconds: float, down: threading.Event | None = None) -> None:
        sh(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
        if down is not None:
            down.set()
        time.sleep(seconds)
        sh(pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")

    return Postgres(f"postgresql:///postgres?host={base}&user=postgres", stop, outage)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The session's PostgreSQL (external when $TRAJGRAPH_TEST_POSTGRES_URL is set)."""
    url = os.environ.get(ENV_URL)
    if url:
        yield Postgres(url)
        return
    base = Path(tempfile.mkdtemp(prefix="trajgraph-pg-"))
    server = start_postgres(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """One local Ray for the whole session (2 CPUs, no dashboard); started by the first test that needs it."""
    import ray

    temp = tempfile.mkdtemp(prefix="tg-ray-")  # short: Ray's socket paths live under it; removed after, logs and spills too
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, _temp_dir=temp)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


__all__ = ["Postgres", "start_postgres", "postgres", "ray_local", "ENV_URL"]
