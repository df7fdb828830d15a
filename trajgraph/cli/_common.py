"""What every `trajgraph` command shares: the error contract, the store option, run filters, outputs.

The error contract (CONTRIBUTING.md): a command that fails prints one line on
stderr, starting `error:`, and exits 2 for bad input (a usage error, an unknown
choice, a missing run or store file, a path it cannot write) or 1 for a failure
while running (a write that failed, an unexpected exception). It is enforced in
one place, `OneLineErrors.main`, the root group's entry point, so no command
can print a traceback or a multi-line box.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, NoReturn, get_args, get_type_hints

import typer
from typer import Abort
from typer.core import TyperGroup

from trajgraph.errors import BudgetError, ConfigError, ReplayError, RewardModelError, RunNotFoundError, StoreError, TrajgraphError
from trajgraph.export.read import RunFilter
from trajgraph.store.text import utf8_text
from trajgraph.trajectory import RunKind, RunStatus

try:  # typer >= 0.24 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on real click
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # type: ignore[assignment]

# Bad input: the same command with other input would work (arguments, a run id, the store or model given,
# a path). Everything else (an environment that cannot fork, a full disk while writing an output, a bug) is
# a failure while running. A store that cannot be read or written counts as input: the user chose it.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, BudgetError, RunNotFoundError, StoreError, ReplayError, RewardModelError,
)
STATUSES: tuple[str, ...] = get_args(RunStatus)
KINDS: tuple[str, ...] = get_args(RunKind)


_MAX_LINE = 600  # an error line quoting a 100,000-character argument is still one readable line


def one_line(text: object) -> str:
    line = " ".join(utf8_text(str(text)).split())
    if len(line) <= _MAX_LINE:
        return line
    half = _MAX_LINE // 2
    return f"{line[:half]} … ({len(line) - 2 * half} characters left out) … {line[-half:]}"


def exit_code(exc: BaseException) -> int:
    """2 for bad input, 1 for a failure while running."""
    if isinstance(exc, ClickException):
        return exc.exit_code
    return 2 if isinstance(exc, INPUT_ERRORS) else 1


def describe(exc: BaseException) -> str:
    """The one line a person reads."""
    if isinstance(exc, UsageError):
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        return one_line(where + exc.format_message())
    if isinstance(exc, (TrajgraphError, ClickException)):
        return one_line(exc.format_message() if isinstance(exc, ClickException) else exc)
    if isinstance(exc, OSError) and exc.strerror:
        name = f"{exc.filename}: " if exc.filename else ""
        return one_line(f"{name}{exc.strerror}")
    return one_line(f"unexpected {type(exc).__name__}: {exc} (set TRAJGRAPH_DEBUG=1 to see the traceback)")


class OneLineErrors(TyperGroup):
    """The root group: every error of every subcommand ends here as one line and an exit code."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:  # a caller that wants the exceptions
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0  # typer.Exit(n) comes back as n
        except NoArgsIsHelpError as exc:  # `trajgraph` or `trajgraph export` alone: the help, as asked
            exc.show()
            code = 0
        except BrokenPipeError:  # `trajgraph runs | head`: the reader left; say nothing more
            sys.stdout = open(os.devnull, "w")
            code = 1
        except Abort:
            print("error: aborted", file=sys.stderr)
            code = 1
        except Exception as exc:
            if os.environ.get("TRAJGRAPH_DEBUG") and not isinstance(exc, (TrajgraphError, ClickException)):
                raise
            print(f"error: {describe(exc)}", file=sys.stderr)
            code = exit_code(exc)
        sys.exit(code)


# -- the store -----------------------------------------------------------------------------

DB_HELP = "Store file (default: $TRAJGRAPH_DB or ./trajgraph.db)."
Db = Annotated[str, typer.Option("--db", envvar="TRAJGRAPH_DB", help=DB_HELP, show_default=False)]
DEFAULT_DB = "trajgraph.db"


_OPENED: list[Any] = []  # every store a command opened; `close_stores` closes them when it ends


def open_db(db: str | Path, *, write: bool = False, create: bool = False) -> Any:
    """The one place the CLI opens a store. Missing files are refused unless `create`."""
    from trajgraph.store import Store, open_store

    if "://" in str(db) and not str(db).startswith("sqlite:///"):  # a server store (postgresql://…): no file to check
        try:
            store = open_store(str(db), readonly=not write).setup()
        except StoreError as exc:  # unreachable, refused, no store there: the URL given is the problem (exit 2)
            raise exc if isinstance(exc, INPUT_ERRORS) else ConfigError(str(exc)) from None
        _OPENED.append(store)
        return store
    path = Path(str(db).removeprefix("sqlite:///"))
    try:
        exists = path.exists()
    except OSError as exc:  # a name the file system refuses (too long, say)
        raise ConfigError(f"--db {one_line(path)}: {exc.strerror or exc}; pass another store path") from None
    if not create and not exists:
        raise ConfigError(f"{path}: no such store file; record a run first or pass --db")
    if create:
        check_writable(path)
    store = Store(path, readonly=not write).setup()
    _OPENED.append(store)
    return store


def close_stores() -> None:
    """Flush and close every store this command opened: SQLite checkpoints its WAL into the file on the
    last close, so a finished command leaves no `-wal`/`-shm` files beside the store."""
    while _OPENED:
        store = _OPENED.pop()
        try:
            store.close()
        except Exception:  # the command's own outcome (and its one error line) is what the user sees
            pass


# -- outputs -------------------------------------------------------------------------------

OutArg = Annotated[str | None, typer.Argument(metavar="OUT", help="Where to write (or give --out).", show_default=False)]
OutOpt = Annotated[str | None, typer.Option("--out", "-o", help="Where to write (or give it as the argument).", show_default=False)]


def output(arg: str | None, opt: str | None, *, what: str = "output file", default: str | None = None,
           folder: bool = False) -> Path:
    """One output path from `OUT` or `--out` (either form works everywhere), checked before any work."""
    if arg is not None and opt is not None and arg != opt:
        raise ConfigError(f"two outputs given ({arg} and --out {opt}); give the {what} once")
    chosen = arg if arg is not None else opt if opt is not None else default
    if chosen is None:
        raise ConfigError(f"no {what} given; pass it as the argument or with --out")
    path = Path(chosen)
    check_writable(path, folder=folder)
    return path


def check_writable(path: Path, *, folder: bool = False) -> None:
    """Refuse a path that cannot be written, in one line, before any work is done."""
    try:
        path.exists()
    except OSError as exc:  # a name the file system refuses (too long, say)
        raise ConfigError(f"{one_line(path)}: {exc.strerror or exc}; give another path") from None
    if path.exists():
        if path.is_dir() != folder:
            raise ConfigError(f"{path}: is {'not ' if folder else ''}a folder; give a {'folder' if folder else 'file'} path")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{path}: cannot write there (permission denied)")
        return
    probe = path.parent
    while not probe.exists():  # the folders that would be created
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"{path}: cannot write in {probe} (permission denied)")
    try:  # os.access says yes to root everywhere, and /proc or a read-only mount still refuse: try it
        fd, probe_file = tempfile.mkstemp(dir=probe, prefix=".trajgraph-write-check-")
        os.close(fd)
        os.unlink(probe_file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write in {probe} ({exc.strerror or exc})") from None


# -- run filters -------------------------------------------------------------------------

_FILTERS: tuple[tuple[str, Any, str], ...] = (
    ("graph", str, "Only runs of this graph."),
    ("tag", str, "Only runs with this tag."),
    ("status", str, f"Only runs with this status: {', '.join(STATUSES)}."),
    ("kind", str, f"Only runs of this kind: {', '.join(KINDS)}."),
    ("task", str, "Only runs of this task id."),
    ("min_outcome", float, "Only runs whose outcome is at least this."),
    ("max_outcome", float, "Only runs whose outcome is at most this."),
    ("since", str, "Only runs started at/after this: an age (30m, 2h, 7d), an ISO date/time or Unix seconds."),
    ("until", str, "Only runs started before this (same forms as --since)."),
)
FILTER_NAMES = tuple(name for name, _, _ in _FILTERS)


def run_filters(**defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared run-filter options; it receives them as one `run_filter: RunFilter`.

    The options are declared once here (the click idiom of a shared-options
    decorator); `defaults` sets a command's own default, e.g. `status="succeeded"`.
    Every value is validated by `RunFilter.of`, so `--status bogus` is one line, exit 2.
    """
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name),
                          annotation=Annotated[typ | None, typer.Option(f"--{name.replace('_', '-')}", help=help_)])
        for name, typ, help_ in _FILTERS
    ]
    return gather_options("run_filter", options, lambda given: RunFilter.of(**{k: v for k, v in given.items() if v is not None}))


def config_options(cls: type, *, into: str = "config") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options for every field of a settings dataclass marked `cli` (help and default from the field).

    The command receives one `cls` instance as `into`; building it runs the
    dataclass's own checks, so the function and the command validate alike
    (HfArgumentParser does the same for TRL's configs).
    """
    hints = get_type_hints(cls)
    options = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", False):
            continue
        flag = f"--{f.name.replace('_', '-')}"
        typ = hints[f.name]
        if typ is bool:
            flag = f"{flag}/--no-{f.name.replace('_', '-')}"
        elif typ == (tuple[str, ...] | None):
            typ = list[str] | None  # a repeatable option
        options.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                         annotation=Annotated[typ, typer.Option(flag, help=f.metadata["help"])]))
    return gather_options(into, options, lambda given: cls(**given))


def gather_options(into: str, options: list[inspect.Parameter],
                   build: Callable[[dict[str, Any]], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add `options` to a command's signature; the command gets `build(their values)` as `into`."""
    names = [p.name for p in options]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != into]

        @wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[into] = build({name: kwargs.pop(name) for name in names})
            return fn(*args, **kwargs)

        command.__signature__ = sig.replace(parameters=[*own, *options])  # type: ignore[attr-defined]
        command.__annotations__ = {}
        return command

    return decorate


# -- printing ------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    """Strict JSON on stdout (NaN/inf become null, so `jq` and `json.loads` read it)."""
    from trajgraph.store.json import finite_or_null, to_jsonable

    print(json.dumps(finite_or_null(to_jsonable(data)), ensure_ascii=False, default=str))


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _caret(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return "^" + chr(code + 64)  # ESC -> ^[, BEL -> ^G, CR -> ^M (caret notation, as less and cat -v)
    if code == 0x7F:
        return "^?"
    return f"<{code:02X}>" if code <= 0x9F else f"<U+{code:04X}>"  # C1 controls, bidi overrides (as less)


def visible(text: str) -> str:
    """Stored text as a terminal should show it: control characters visible (`^[` for ESC, `<U+202E>`
    for a bidi override), so a graph name or a step cannot clear the screen or retitle the window.
    Tab and newline stay. For terminals only: piped output keeps the data."""
    return _CONTROL.sub(_caret, utf8_text(text))


def on_terminal() -> bool:
    """Whether stdout is a terminal (or rich is told to treat it as one)."""
    return sys.stdout.isatty() or bool(os.environ.get("FORCE_TERMINAL"))


def fail(message: str) -> NoReturn:
    """Stop a command for bad input (exit 2), from code that found it itself."""
    raise ConfigError(message)


__all__ = ["OneLineErrors", "open_db", "output", "run_filters", "config_options", "print_json", "visible", "on_terminal",
           "Db", "OutArg", "OutOpt"]
