"""Mutation testing of core modules with mutmut (PyPI `mutmut`, in the dev extra): do the tests notice a bug?

    python benchmarks/mutation.py [--modules replay,writer,...] [--max-children 2]

mutmut changes one thing at a time in a module (a comparison flipped, a
constant changed, a call's argument dropped, ...) and runs the tests that cover
that function; a mutant the tests do not fail on "survived". The score is
killed / (killed + survived): mutants that time out count as killed, mutants no
test reaches ("no tests") are reported apart and count as survived.

It runs in a throwaway copy of the repository (tracked files only), so the
working tree is never mutated and other processes using it are not disturbed.
Each module is run against the tests that cover it (MODULES below), a bounded
subset so the whole run takes minutes, not hours, on 2 cores. Surviving mutants
are listed (`--show N`) with their diff; `mutmut show NAME` in the copy
(printed at the end) shows any one of them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (module to mutate, tests that cover it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "replay": ("trajgraph/replay/cassette.py", ["tests/test_replay.py", "tests/test_nested_graphs.py"]),
    "diff": ("trajgraph/replay/diff.py", ["tests/test_replay.py", "tests/test_cli_runs.py"]),
    "writer": ("trajgraph/store/writer.py", ["tests/test_reliability_writes.py", "tests/test_record.py"]),
    "rows": ("trajgraph/store/rows.py", ["tests/test_store.py", "tests/test_reliability_store.py"]),
    "json": ("trajgraph/store/json.py", ["tests/test_store.py", "tests/test_reliability_writes.py", "tests/test_reliability_store.py"]),
    "redact": ("trajgraph/store/redact.py", ["tests/test_reliability_secrets.py"]),
    "budget": ("trajgraph/search/budget.py", ["tests/test_optimizers.py", "tests/test_search_answers.py"]),
}
DEFAULT = ["replay", "diff", "writer", "redact"]
STATUS = {"killed", "survived", "timeout", "no tests", "suspicious", "skipped", "segfault", "not checked", "check was interrupted by user"}


def copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    for name in files:
        src = ROOT / name
        if name and src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def configure(dest: Path, module: str, tests: list[str]) -> None:
    """mutmut reads [tool.mutmut] from the copy's pyproject.toml."""
    text = (dest / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text)
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["trajgraph"]\n'
        f"only_mutate = [{json.dumps(module)}]\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]\n'
        'also_copy = ["graphs", "adapters", "benchmarks", "examples", "langgraph.json"]\n'
    )
    (dest / "pyproject.toml").write_text(text)


def run_one(dest: Path, name: str, max_children: int, timeout_s: int) -> dict[str, object]:
    module, tests = MODULES[name]
    shutil.rmtree(dest / "mutants", ignore_errors=True)
    configure(dest, module, tests)
    env = {**os.environ, "CI": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)], cwd=dest, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    took = time.perf_counter() - t0
    results = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=dest, env=env,
                             capture_output=True, text=True).stdout
    counts: dict[str, int] = {}
    survivors: list[str] = []
    for line in results.splitlines():
        mutant, _, status = line.strip().rpartition(": ")
        if status in STATUS:
            counts[status] = counts.get(status, 0) + 1
            if status in ("survived", "no tests"):
                survivors.append(mutant)
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    alive = counts.get("survived", 0) + counts.get("no tests", 0)
    return {"module": module, "mutants": sum(counts.values()), "killed": killed, "survived": counts.get("survived", 0),
            "no tests": counts.get("no tests", 0), "score": killed / (killed + alive) if killed + alive else float("nan"),
            "seconds": round(took), "survivors": survivors,
            "error": "" if proc.returncode == 0 and killed + alive else (proc.stdout + proc.stderr)[-800:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default=",".join(DEFAULT), help=f"comma-separated, of {', '.join(MODULES)}")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per module")
    parser.add_argument("--show", type=int, default=0, help="print the diff of up to N survivors per module")
    parser.add_argument("--keep", action="store_true", help="keep the copy (to `mutmut show` a survivor there)")
    args = parser.parse_args()
    names = [n.strip() for n in args.modules.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    dest = Path(tempfile.mkdtemp(prefix="trajgraph-mutation-"))
    rows = []
    try:
        copy_repo(dest)
        for name in names:
            result = run_one(dest, name, args.max_children, args.timeout)
            rows.append(result)
            print(f"{result['module']}: {result['killed']}/{result['mutants']} killed, score {result['score']:.2f} "
                  f"({result['seconds']} s){' ERROR ' + str(result['error']) if result['error'] else ''}", flush=True)
            for mutant in list(result["survivors"])[: args.show]:  # type: ignore[call-overload]
                diff = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=dest, capture_output=True, text=True).stdout
                print("  survived:", mutant, "\n    " + "\n    ".join(diff.strip().splitlines()[-6:]))
        sys.path.insert(0, str(Path(__file__).parent))
        from _table import emit

        table = [{k: v for k, v in r.items() if k not in ("survivors", "error")} for r in rows]
        killed = sum(int(r["killed"]) for r in rows)  # type: ignore[call-overload]
        alive = sum(int(r["survived"]) + int(r["no tests"]) for r in rows)  # type: ignore[call-overload]
        total = {"module": "total", "mutants": sum(int(r["mutants"]) for r in rows), "killed": killed,  # type: ignore[call-overload]
                 "survived": sum(int(r["survived"]) for r in rows), "no tests": sum(int(r["no tests"]) for r in rows),  # type: ignore[call-overload]
                 "score": killed / (killed + alive) if killed + alive else float("nan"), "seconds": sum(int(r["seconds"]) for r in rows)}  # type: ignore[call-overload]
        emit("mutation", "Mutation score (mutmut): killed / (killed + survived + not reached)", [*table, total],
             {"survivors": {str(r["module"]): r["survivors"] for r in rows}})
        print(f"mutation score: {total['score']:.3f}")
    finally:
        if args.keep:
            print(f"copy kept at {dest}")
        else:
            shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    main()
