"""What recording costs in instructions: a deterministic companion to `record_overhead.py`.

On a shared 2-core VM two runs of `record_overhead.py` on the same code differ by ±0.015 in their ratio,
so a change worth 1% cannot be seen there. Instruction counts can: this script runs the same agent
(LangGraph's ReAct agent on a zero-latency scripted model, 21 steps) under valgrind's callgrind, plain
and recorded, and counts the instructions of the timed runs only (a callgrind dump before and after
them; every thread counted). Three runs of the same code gave 74.92, 75.16 and 75.17 M recorded and
65.73–65.77 M plain: read differences under ~0.3 M a run as noise (thread timing moves a little work).
Instructions are not time (the writer's encoding runs at a higher rate than LangGraph's own code, and a
hook on cold caches costs more time than its count says), so confirm a change in time too.

    python benchmarks/record_instructions.py            # ~3 minutes; needs valgrind on PATH
    python benchmarks/record_instructions.py --runs 20

The writer's 50 ms tick is stretched so that it writes once per run, at the run's end, as it does on an idle
machine; `PYTHONHASHSEED=0` keeps the interpreter's work the same from run to run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from _table import emit

TARGET = 1.10  # recorded / plain, as record_overhead.py


def _child(mode: str, runs: int, work: Path) -> None:
    """The measured process: warm up, dump, run `runs` times, dump (callgrind_control on our own pid)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import trajgraph as tg
    import trajgraph.store.writer as writer
    from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent

    script = [[fake_tool_call("add" if i % 2 else "multiply", a=i, b=i + 1)] for i in range(10)] + ["the answer"]
    graph = react_calculator_agent(ScriptedToolModel(script=script))
    store = tg.Store(work / "recorded.db")
    if mode == "recorded":
        graph = tg.record(graph, store=store)
    writer._FLUSH_INTERVAL_S = 100.0  # one write per run, at its end
    inp = {"messages": [("user", "compute it")]}
    for _ in range(5):
        graph.invoke(inp)
    store.flush()
    subprocess.run(["callgrind_control", "--dump=before", str(os.getpid())], capture_output=True, check=False)
    for _ in range(runs):
        graph.invoke(inp)
    subprocess.run(["callgrind_control", "--dump=after", str(os.getpid())], capture_output=True, check=False)
    store.close()


def count(mode: str, runs: int, work: Path) -> float:
    """Instructions per run of `mode` ("plain" or "recorded"), under callgrind."""
    out = work / f"{mode}.cg"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "--dump-instr=no", "--dump-line=no",
         sys.executable, __file__, "--child", mode, "--runs", str(runs), "--work", str(work)],
        env=env, capture_output=True, check=True,
    )
    for dump in work.glob(f"{mode}.cg.*"):
        text = dump.read_text(errors="replace")
        if "Trigger: dump after" in text:
            totals = re.search(r"^summary:\s*(\d+)", text, re.M)
            if totals:
                return int(totals.group(1)) / runs
    raise RuntimeError(f"no callgrind dump after the timed runs of {mode} (is callgrind_control on PATH?)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each graph")
    parser.add_argument("--child", choices=["plain", "recorded"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.runs, args.work)
        return
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"record_instructions.py needs {' and '.join(missing)} on PATH (apt install valgrind)")
    with tempfile.TemporaryDirectory(prefix="tg-instr-") as tmp:
        plain = count("plain", args.runs, Path(tmp))
        recorded = count("recorded", args.runs, Path(tmp))
    rows = [
        {"measure": "plain run", "value": f"{plain / 1e6:.2f} M instructions"},
        {"measure": "recorded run", "value": f"{recorded / 1e6:.2f} M instructions"},
        {"measure": "recorded / plain", "value": f"{recorded / plain:.3f}  (target <= {TARGET})"},
        {"measure": "overhead", "value": f"{(recorded - plain) / 1e6:.2f} M  (the target allows {(TARGET - 1) * plain / 1e6:.2f} M)"},
    ]
    emit("record_instructions", f"record instructions: 21-step ReAct runs, {args.runs} each, under callgrind", rows,
         {"plain_instructions_per_run": plain, "recorded_instructions_per_run": recorded, "ratio": recorded / plain})

if __name__ == "__main__":
    main()
