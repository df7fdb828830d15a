"""What recording costs: plain vs recorded wall time of a zero-latency ReAct agent, and store throughput.

The agent is LangGraph's prebuilt ReAct agent on a scripted model with no latency
(`trajgraph.testing.ScriptedToolModel`): `--tool-calls` tool calls, then an answer,
so every run has 2 * tool_calls + 1 steps and the model costs nothing; whatever
recording adds shows up undiluted. Runs go in blocks of `--block`, plain and
recorded blocks interleaved (the order flips every round) so machine load hits
both alike, and each recorded block ends with `store.flush()`: the background
writer's work is charged to recording, not left to run during a plain block.
Wall time is what the target is about; CPU time (all threads) is printed too,
because it is steadier on a busy machine. A real model call takes 100x longer
than one of these steps, so in practice the ratio is closer to 1.

Also measured on the same store file: write throughput (Store.write in the
writer's batch size), read throughput (Store.steps, JSON decoded back into
messages) and bytes per step on disk.

    python benchmarks/record_overhead.py              # about 20 s
    python benchmarks/record_overhead.py --runs 500   # steadier numbers

Targets: recorded / plain <= 1.10 with the default redaction on, and store writes >= 50,000 steps/s
(issue 20; issue 2 set 1.15).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=DeprecationWarning)  # create_react_agent's move notice

import trajgraph as tg  # noqa: E402
from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent  # noqa: E402
from trajgraph.trajectory import Step  # noqa: E402

TARGET = 1.10
WRITE_TARGET = 50_000  # steps/s, redaction on
RESULTS = Path(__file__).parent / "results" / "record_overhead.json"


def script(tool_calls: int) -> list[Any]:
    return [[fake_tool_call("add" if i % 2 else "multiply", a=i, b=i + 1)] for i in range(tool_calls)] + ["the answer"]


def time_blocks(graphs: dict[str, Any], store: Any, runs: int, block: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """Per-run wall and CPU seconds of each block, alternating which graph goes first each round."""
    inp = {"messages": [("user", "compute it")]}
    names = list(graphs)
    for _ in range(warmup):
        for name in names:
            graphs[name].invoke(inp)
    store.flush()
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for i in range(max(1, runs // block)):
        for name in names if i % 2 == 0 else reversed(names):
            graph = graphs[name]
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(block):
                graph.invoke(inp)
            if name == "recorded":
                store.flush()  # the writer's work belongs to this block
            times[name]["wall"].append((time.perf_counter() - w0) / block)
            times[name]["cpu"].append((time.process_time() - c0) / block)
    return times


def store_throughput(path: Path, template: list[Step], runs: int, batch: int = 500) -> dict[str, float]:
    """Write `runs` copies of a recorded run's steps in writer-sized batches, then read them back."""
    store = tg.Store(path)
    ids = [f"tp{i:06d}" for i in range(runs)]
    store.write(runs=[tg.Run(id=i, graph="throughput") for i in ids])
    rows = [s.replace(run_id=i) for i in ids for s in template]
    t0 = time.perf_counter()
    for k in range(0, len(rows), batch):
        store.write(steps=rows[k : k + batch])
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    read = sum(len(store.steps(i)) for i in ids)
    read_s = time.perf_counter() - t0
    assert read == len(rows)
    store.close()
    return {"steps": len(rows), "write_steps_per_s": len(rows) / write_s, "read_steps_per_s": read / read_s}


def file_bytes(path: Path) -> int:
    """Size of the store with its WAL folded in."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="timed runs of each graph")
    parser.add_argument("--block", type=int, default=10, help="runs per timed block")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tool-calls", type=int, default=10, help="steps per run = 2 * tool_calls + 1")
    parser.add_argument("--throughput-runs", type=int, default=2000, help="runs written in the throughput test")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tg-bench-") as tmp:  # two stores of ~40 MB: removed after
        results = measure(args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _print(results, args.out)


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    steps_per_run = 2 * args.tool_calls + 1
    store = tg.Store(work / "recorded.db")
    graphs = {
        "plain": react_calculator_agent(ScriptedToolModel(script=script(args.tool_calls))),
        "recorded": tg.record(react_calculator_agent(ScriptedToolModel(script=script(args.tool_calls))), store=store),
    }
    times = time_blocks(graphs, store, args.runs, args.block, args.warmup)
    timed_runs = len(times["plain"]["wall"]) * args.block

    recorded_runs = store.runs()
    assert len(recorded_runs) == timed_runs + args.warmup and {r.status for r in recorded_runs} == {"succeeded"}
    template = store.steps(recorded_runs[0].id)
    assert len(template) == steps_per_run, len(template)
    n_steps, n_calls = store.count("steps"), store.count("model_calls")
    size = file_bytes(store.path)
    store.close()

    plain, rec = times["plain"]["wall"], times["recorded"]["wall"]
    med_p, med_r = statistics.median(plain), statistics.median(rec)
    paired = statistics.median(r / p for r, p in zip(rec, plain))
    cpu_p, cpu_r = statistics.median(times["plain"]["cpu"]), statistics.median(times["recorded"]["cpu"])
    tp = store_throughput(work / "throughput.db", template, args.throughput_runs)
    tp_bytes = file_bytes(work / "throughput.db")

    results = {
        "benchmark": "record_overhead",
        "agent": f"create_react_agent, ScriptedToolModel (zero latency), {args.tool_calls} tool calls + answer",
        "steps_per_run": steps_per_run,
        "runs_each": timed_runs,
        "block": args.block,
        "plain_ms_median": med_p * 1e3,
        "recorded_ms_median": med_r * 1e3,
        "plain_ms_min": min(plain) * 1e3,
        "recorded_ms_min": min(rec) * 1e3,
        "ratio_median": med_r / med_p,
        "ratio_min": min(rec) / min(plain),
        "ratio_paired_median": paired,
        "ratio_total": sum(rec) / sum(plain),
        "plain_cpu_ms_median": cpu_p * 1e3,
        "recorded_cpu_ms_median": cpu_r * 1e3,
        "ratio_cpu_median": cpu_r / cpu_p,
        "overhead_cpu_us_per_step": (cpu_r - cpu_p) / steps_per_run * 1e6,
        "overhead_us_per_step": (med_r - med_p) / steps_per_run * 1e6,
        "target_ratio": TARGET,
        "meets_target": med_r / med_p <= TARGET,
        "write_target_steps_per_s": WRITE_TARGET,
        "meets_write_target": tp["write_steps_per_s"] >= WRITE_TARGET,
        "store_write_steps_per_s": tp["write_steps_per_s"],
        "store_read_steps_per_s": tp["read_steps_per_s"],
        "throughput_steps": tp["steps"],
        "bytes_per_step_recorded_store": size / n_steps,
        "bytes_per_step_steps_only": tp_bytes / tp["steps"],
        "recorded_steps": n_steps,
        "recorded_model_calls": n_calls,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return results


def _print(r: dict[str, Any], out: Path) -> None:
    rows = [
        ("plain run (median)", f"{r['plain_ms_median']:.2f} ms"),
        ("recorded run (median)", f"{r['recorded_ms_median']:.2f} ms"),
        ("recorded / plain (median)", f"{r['ratio_median']:.3f}  (target <= {r['target_ratio']})"),
        ("recorded / plain (min, paired, total)", f"{r['ratio_min']:.3f}, {r['ratio_paired_median']:.3f}, {r['ratio_total']:.3f}"),
        ("recorded / plain (CPU time, median)", f"{r['ratio_cpu_median']:.3f}"),
        ("overhead per step (wall, CPU)", f"{r['overhead_us_per_step']:.0f} µs, {r['overhead_cpu_us_per_step']:.0f} µs"),
        ("store write (redaction on)", f"{r['store_write_steps_per_s']:,.0f} steps/s  (target >= {WRITE_TARGET:,})"),
        ("store read", f"{r['store_read_steps_per_s']:,.0f} steps/s"),
        ("bytes per step (file incl. model calls)", f"{r['bytes_per_step_recorded_store']:,.0f}"),
        ("bytes per step (steps only)", f"{r['bytes_per_step_steps_only']:,.0f}"),
    ]
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"record overhead: {r['steps_per_run']}-step ReAct runs, {r['runs_each']} each, blocks of {r['block']}")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for k, v in rows:
            table.add_row(k, v)
        Console().print(table)
    except ImportError:  # pragma: no cover - rich is a dependency; plain text if it is missing
        for k, v in rows:
            print(f"{k:42} {v}")
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
