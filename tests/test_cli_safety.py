"""Issue 21 items 4 and 5: every failure said once and truthfully; the terminal is not the attacker's.

Real processes, a real pseudo-terminal, a real loopback HTTP server and a port
that refuses: what a user of `trajgraph` would see.
"""

from __future__ import annotations

import http.server
import os
import pty
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from trajgraph.testing.hostile import seeded_store


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trajgraph.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, errors="backslashreplace")


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The contract: no traceback, exactly one stderr line, starting `error:`."""
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_store(tmp_path_factory.mktemp("safety") / "hostile.db")


# -- item 5: the terminal -------------------------------------------------------------------


def on_a_terminal(*args: str) -> bytes:
    """Run the CLI with stdout on a pseudo-terminal, as a person at a shell would."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "400", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "trajgraph.cli", *args], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0, out[-2000:]
    return out


RAW = (b"\x1b]0;TITLE", b"\x1b[2J", b"\xe2\x80\xae")  # set the window title, clear the screen, reverse the text
SGR = re.compile(rb"\x1b\[[0-9;]*m")  # rich's own styling


def _escape_run(db: Path) -> str:
    import trajgraph as tg

    return next(r.id for r in tg.Store(db, readonly=True).runs() if r.graph.startswith("escape sequences"))


def test_runs_and_show_render_control_characters_visibly_on_a_terminal(db: Path) -> None:
    for args in (("runs", "--db", str(db)), ("show", _escape_run(db), "--db", str(db)), ("show", _escape_run(db), "--db", str(db), "--tree")):
        out = on_a_terminal(*args)
        assert not any(raw in out for raw in RAW), args
        shown = SGR.sub(b"", out)
        assert b"^[[31mred^[[0m^[]0;TITLE^G^[[2J" in shown, args  # ESC as ^[, BEL as ^G (caret notation)
        assert b"<U+202E>evil" in shown, args  # a bidi override, named


def test_piped_output_keeps_the_data(db: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "trajgraph.cli", "runs", "--db", str(db)], capture_output=True, timeout=120)
    assert done.returncode == 0
    assert b"\x1b]0;TITLE" in done.stdout and b"^[" not in done.stdout


def test_stored_markup_is_text_not_markup(tmp_path: Path) -> None:
    import trajgraph as tg

    store = tg.Store(tmp_path / "m.db")
    store.add_run(tg.Run(id="r1", graph="[/]oops[bold]", status="succeeded"))
    store.close()
    out = on_a_terminal("runs", "--db", str(tmp_path / "m.db"))
    assert b"[/]oops[bold]" in out.replace(b"\x1b[1m", b"").replace(b"\x1b[0m", b"")


# -- item 4: span export ---------------------------------------------------------------------


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 500

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, type[_Answer]]]:
    handler = type("Answer", (_Answer,), {"status": 500})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", handler
    server.shutdown()
    server.server_close()


def _refusing_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spans_to_a_refusing_port_fail_once_within_the_deadline(db: Path) -> None:
    import time

    t0 = time.monotonic()
    done = cli("export", "spans", f"http://127.0.0.1:{_refusing_port()}/v1/traces", "--db", str(db), "--deadline", "2")
    took = time.monotonic() - t0
    assert done.returncode == 1
    assert "not delivered" in one_error_line(done)
    assert "exported" not in done.stdout
    assert took < 30


def test_spans_to_a_server_answering_500_fail_then_succeed(db: Path, collector: tuple[str, type[_Answer]]) -> None:
    url, handler = collector
    done = cli("export", "spans", url, "--db", str(db), "--deadline", "2")
    assert done.returncode == 1 and "500" in one_error_line(done)
    handler.status = 200
    done = cli("export", "spans", url, "--db", str(db), "--deadline", "2")
    assert done.returncode == 0 and done.stdout.startswith("exported "), done.stderr


def test_spans_to_a_closed_pipe_and_a_full_disk(db: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "trajgraph.cli", "export", "spans", "/dev/stdout", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # the reader leaves, as `| head -c 10` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err
    if os.path.exists("/dev/full"):
        done = cli("export", "spans", "/dev/full", "--db", str(db))
        assert done.returncode == 1 and "No space left" in one_error_line(done)


def test_spans_to_an_unknown_scheme_are_refused(db: Path, tmp_path: Path) -> None:
    done = cli("export", "spans", "ftp://x", "--db", str(db), cwd=tmp_path)
    assert done.returncode == 2 and "ftp://" in one_error_line(done)
    assert not (tmp_path / "ftp:").exists()


# -- item 4: arguments and damaged stores ------------------------------------------------------


def test_numbers_refused_in_one_line(db: Path, tmp_path: Path) -> None:
    assert cli("runs", "--limit", str(10**23), "--db", str(db)).returncode == 0  # more than there are: all of them
    for args in (("runs", "--since", "nan"), ("runs", "--until", "inf"), ("runs", "--min-outcome", "nan"),
                 ("reward", "train", str(tmp_path / "rm"), "--lr", "nan"), ("reward", "train", str(tmp_path / "rm"), "--lr", "0")):
        done = cli(*args, "--db", str(db))
        assert done.returncode == 2, args
        one_error_line(done)
    assert not (tmp_path / "rm").exists()


def test_a_diverging_reward_model_is_not_saved(db: Path, tmp_path: Path) -> None:
    done = cli("reward", "train", str(tmp_path / "rm"), "--db", str(db), "--lr", "1e30", "--head-lr", "1e30", "--epochs", "1",
               "--probe-steps", "0", "--no-progress")
    assert done.returncode != 0 and "diverged" in one_error_line(done)
    assert not (tmp_path / "rm").exists()


def test_paths_refused_in_one_line(db: Path) -> None:
    done = cli("runs", "--db", "a" * 100_000)
    assert done.returncode == 2 and len(one_error_line(done)) < 1000
    if os.path.isdir("/proc"):
        done = cli("export", "sft", "/proc/x.jsonl", "--db", str(db))
        assert done.returncode == 2 and "cannot write" in one_error_line(done)


@pytest.mark.parametrize("damage", ["UPDATE _trajgraph_meta SET value='abc' WHERE key='schema_version'",
                                    "UPDATE runs SET started_at='yesterday'", "UPDATE steps SET latency_ms='slow'"])
def test_damaged_store_is_not_a_valid_store(db: Path, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "damaged.db"
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute(damage)
    for args in (("runs",), ("export", "sft", str(tmp_path / "x.jsonl"), "--any-outcome")):
        done = cli(*args, "--db", str(copy))
        if "steps" in damage and args == ("runs",):
            assert done.returncode == 0  # listing runs reads no steps
            continue
        assert done.returncode == 2 and "not a valid store" in one_error_line(done), (args, done.stderr)
