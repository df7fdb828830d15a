"""Guard against speed regressions (issue 20): quick forms of the hot-path benchmarks, compared
with the committed baseline (benchmarks/results/bench-check.json); exit 1 naming every measure
that is more than 20% worse.

Every measure is a ratio of CPU times taken inside this one run, so machine load and CPU speed
cancel out (wall time on a shared machine is mostly waiting for a core):
recorded / plain run time, redaction on / off write speed, a path's throughput over a reference
workload timed in the same process (pure Python for the store, one torch matmul for the models),
`import trajgraph` over a bare interpreter. Each side is the best of several interleaved tries:
load only ever makes a try slower, so the best try is the least disturbed one. Torch runs on one
thread here: on a loaded machine a multi-threaded op waits for its slowest thread (measured: the
same fp32 path moved 4x between two runs with 2 threads), so one thread is what compares.

    scripts/bench-check              # about 1-2 minutes on 2 cores; exit 1 on a regression
    scripts/bench-check --update     # write the current numbers as the new baseline
    scripts/bench-check --only store,redact
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=DeprecationWarning)

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "benchmarks" / "results" / "bench-check.json"
TOLERANCE = 0.20  # fail when a measure is more than 20% worse than its baseline
LOWER = "lower"  # lower is better
HIGHER = "higher"

Measure = tuple[float, str, str]  # value, which direction is better, what it is


def cpu_now() -> float:
    """CPU seconds of this process (all its threads) and of its finished children: what a piece of
    work costs, whatever else the machine runs (wall time under load is mostly waiting)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def best(fn: Callable[[], Any], tries: int) -> float:
    """The cheapest of `tries` runs of fn, in CPU seconds."""
    out = float("inf")
    for _ in range(tries):
        t0 = cpu_now()
        fn()
        out = min(out, cpu_now() - t0)
    return out


def interleaved(fns: dict[str, Callable[[], Any]], tries: int) -> dict[str, float]:
    """Least CPU time of each fn, the fns taking turns (the order flips every round)."""
    out = {k: float("inf") for k in fns}
    names = list(fns)
    for i in range(tries):
        for name in names if i % 2 == 0 else reversed(names):
            t0 = cpu_now()
            fns[name]()
            out[name] = min(out[name], cpu_now() - t0)
    return out


def python_reference() -> Callable[[], Any]:
    """A fixed pure-Python workload (dicts, strings, JSON): the unit store speeds are counted in."""
    doc = {"messages": [{"type": "ai", "content": f"step {i}: open the door", "id": f"id-{i}"} for i in range(20)], "n": 1}

    def work() -> None:
        for _ in range(200):
            json.loads(json.dumps(doc))

    return work


# -- measures ------------------------------------------------------------------------------------

def startup(tries: int) -> dict[str, Measure]:
    """`import trajgraph` and `trajgraph --help`, over a bare interpreter start."""
    py = sys.executable
    cmds = {"bare": [py, "-c", "pass"], "import": [py, "-c", "import trajgraph"],
            "cli": [py, "-m", "trajgraph.cli", "--help"]}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    def runner(cmd: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)

    times = interleaved({k: runner(c) for k, c in cmds.items()}, tries)
    return {"startup.import_over_bare": (times["import"] / times["bare"], LOWER, "`python -c 'import trajgraph'` / `python -c pass`"),
            "startup.cli_help_over_bare": (times["cli"] / times["bare"], LOWER, "`python -m trajgraph.cli --help` / `python -c pass`")}


def record(blocks: int) -> dict[str, Measure]:
    """Recorded / plain time of a zero-latency 21-step ReAct run (benchmarks/record_overhead.py, short)."""
    import trajgraph as tg
    from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent

    script = [[fake_tool_call("add" if i % 2 else "multiply", a=i, b=i + 1)] for i in range(10)] + ["the answer"]
    with tempfile.TemporaryDirectory() as tmp:
        store = tg.Store(Path(tmp) / "rec.db")
        graphs = {"plain": react_calculator_agent(ScriptedToolModel(script=script)),
                  "recorded": tg.record(react_calculator_agent(ScriptedToolModel(script=script)), store=store)}
        inp = {"messages": [("user", "compute it")]}

        def block(g: Any) -> Callable[[], None]:
            def run() -> None:
                for _ in range(5):
                    g.invoke(inp)
                store.flush()
            return run

        for g in graphs.values():
            block(g)()  # warm-up
        t = interleaved({k: block(g) for k, g in graphs.items()}, blocks)
        store.close()
    return {"record.recorded_over_plain": (t["recorded"] / t["plain"], LOWER, "recorded / plain CPU time, 21-step ReAct, best blocks")}


def store(tries: int) -> dict[str, Measure]:
    """Store write (redaction on and off) and read speed, in reference workloads per step."""
    import trajgraph as tg
    from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent

    script = [[fake_tool_call("add" if i % 2 else "multiply", a=i, b=i + 1)] for i in range(10)] + ["the answer"]
    with tempfile.TemporaryDirectory() as tmp:
        rec = tg.Store(Path(tmp) / "t.db")
        tg.record(react_calculator_agent(ScriptedToolModel(script=script)), store=rec).invoke({"messages": [("user", "go")]})
        run = rec.runs()[0]
        template, calls = rec.steps(run.id), rec.model_calls(run.id)
        rec.close()
        n = [0]

        def write(redact: Any) -> Callable[[], None]:
            def go() -> None:
                s = tg.Store(Path(tmp) / f"w{n[0]}.db") if redact == "default" else tg.Store(Path(tmp) / f"w{n[0]}.db", redact=None)
                n[0] += 1
                ids = [f"r{i}" for i in range(40)]
                s.write(runs=[run.replace(id=i) for i in ids])
                s.write(steps=[x.replace(run_id=i) for i in ids for x in template],
                        model_calls=[c.replace(run_id=i) for i in ids for c in calls])
                s.close()
            return go

        reader = tg.Store(Path(tmp) / "read.db")
        ids = [f"r{i}" for i in range(40)]
        reader.write(runs=[run.replace(id=i) for i in ids], steps=[x.replace(run_id=i) for i in ids for x in template])
        t = interleaved({"on": write("default"), "off": write(None), "read": lambda: [reader.steps(i) for i in ids],
                         "ref": python_reference()}, tries)
        reader.close()
    return {
        "store.write_redact_on_over_off": (t["off"] / t["on"], HIGHER, "write speed with the default redaction / without"),
        "store.write_per_reference": (t["ref"] / t["on"], HIGHER, "40 runs (steps + model calls) written per reference workload, redaction on"),
        "store.read_per_reference": (t["ref"] / t["read"], HIGHER, "40 runs' steps read (JSON decoded) per reference workload"),
    }


def redact(tries: int) -> dict[str, Measure]:
    """Redaction speed on long texts (prose and inputs that made the old patterns retry at every
    character) per reference workload, and linearity: 10x the text over 10x the time."""
    from trajgraph.store import redact_secrets
    from trajgraph.store.json import dumps
    from trajgraph.store.redact import may_hold_secret

    texts = ["You are in a kitchen; the fridge is closed. token_ids=[1,2] " * 40, "a" * 2000, "x_api_key_ " * 200,
             "a=b:c=" * 300, ("-----BEGIN RSA " + "PRIVATE KEY-----\n") * 60, "http://host:port/" * 120]

    def run(scale: int) -> Callable[[], None]:
        big = [t * scale for t in texts]
        docs = [dumps({"content": t}) for t in big]

        def go() -> None:
            for _ in range(10 // scale):  # the same number of characters at both scales
                for t, d in zip(big, docs):
                    redact_secrets(t)
                    may_hold_secret(d)
        return go

    t = interleaved({"x1": run(1), "x10": run(10), "ref": python_reference()}, tries)
    return {"redact.per_reference": (t["ref"] / t["x10"], HIGHER, "long texts redacted (text and JSON pre-check) per reference workload"),
            "redact.time_10x_over_10": (t["x10"] / t["x1"], LOWER, "time for 10x the text / 10x the time of 1x (1 when linear, 10 when quadratic)")}


def branch(tries: int) -> dict[str, Measure]:
    """Propose and branch, 20 levels down a 50-deep chain (in-memory checkpoints; every node new, so
    no expansion is served from a search's memo), per reference workload."""
    import asyncio

    from trajgraph.search.budget import Budget, BudgetMeter
    from trajgraph.search.space import Space
    from trajgraph.testing.chain import chain_start, deceptive_chain_graph

    async def deepen() -> None:
        space = Space(deceptive_chain_graph(depth=50, skill=1.0, trap=0.0, seed=0), "policy", meter=BudgetMeter(Budget(policy_calls=None)))
        node = await space.root(chain_start())
        for _ in range(20):
            node = await space.expand(node, (await space.propose(node, 1))[0])

    asyncio.run(deepen())  # warm-up
    t = interleaved({"branch": lambda: asyncio.run(deepen()), "ref": python_reference()}, tries)
    return {"branch.per_reference": (t["ref"] / t["branch"], HIGHER, "20 propose-and-branch steps down a chain per reference workload")}


def torch_reference() -> Callable[[], Any]:
    import torch

    a, b = torch.randn(128, 384), torch.randn(384, 1536)

    def work() -> None:
        for _ in range(20):
            a @ b

    return work


def reward(tries: int) -> dict[str, Measure]:
    """LocalRewardModel.score (fp32 and fast='auto') per torch reference; auto over fp32."""
    import torch

    torch.set_num_threads(1)

    from trajgraph.reward import LocalRewardModel, RewardItem, init_model

    words = "open the wooden door take the brass key go north look around read the note".split()
    items = [RewardItem(f"task {i}: reach the tower", ((f"{words[i % 15]} {words[(i * 3) % 15]}",
                                                        f"room {i}: " + " ".join(words[(i + j) % 15] for j in range(10))),),
                        words[i % 15]) for i in range(32)]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TRAJGRAPH_CACHE", str(Path(tmp) / "cache"))
        folder = init_model(Path(tmp) / "rm", max_length=128)
        # cache_size=0: the same items are scored again and again here; the model path is what is timed
        fp32 = LocalRewardModel(folder, device="cpu", fast=None, max_length=128, cache_size=0)
        auto = LocalRewardModel(folder, device="cpu", fast="auto", max_length=128, cache_size=0)
        for m in (fp32, auto):
            m.score(items)
        with torch.inference_mode():
            t = interleaved({"fp32": lambda: fp32.score(items), "auto": lambda: auto.score(items), "ref": torch_reference()}, tries)
        picked = auto.probe.chosen if auto.probe else "?"
        fp32.close()
        auto.close()
    return {"reward.fp32_per_reference": (t["ref"] / t["fp32"], HIGHER, "32 items scored (fp32) per torch reference"),
            "reward.auto_over_fp32": (t["fp32"] / t["auto"], HIGHER, f"fast='auto' (picked {picked}) speed / fp32 speed")}


def policy(tries: int) -> dict[str, Measure]:
    """MiniLM policy steps (new strings each time, so the encoder runs) per torch reference."""
    import torch

    torch.set_num_threads(1)
    from trajgraph.policies import minilm_policy
    from trajgraph.testing.choice_task import choice_states
    pol = minilm_policy(temperature=0.1)
    pol(choice_states(1, seed=99)[0])
    rounds = iter(range(1000))

    def steps() -> None:
        for s in choice_states(8, seed=next(rounds)):
            pol(s)

    t = interleaved({"policy": steps, "ref": torch_reference()}, tries)
    return {"policy.steps_per_reference": (t["ref"] / t["policy"], HIGHER, "8 MiniLM policy steps (new strings) per torch reference")}


GROUPS: dict[str, Callable[[int], dict[str, Measure]]] = {
    "startup": lambda q: startup(10 * q), "record": lambda q: record(8 * q), "store": lambda q: store(5 * q),
    "redact": lambda q: redact(5 * q), "branch": lambda q: branch(5 * q), "reward": lambda q: reward(5 * q),
    "policy": lambda q: policy(5 * q),
}


def compare(now: dict[str, Any], base: dict[str, Any], tolerance: float) -> list[str]:
    """One line per measure more than `tolerance` worse than its baseline."""
    bad = []
    for name, m in now.items():
        if name not in base:
            continue
        b, v, better = base[name]["value"], m["value"], m["better"]
        worse = v > b * (1 + tolerance) if better == LOWER else v < b / (1 + tolerance)
        if worse:
            bad.append(f"{name}: {v:.3f} now vs {b:.3f} baseline ({better} is better; >{tolerance:.0%} worse) — {m['what']}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update", action="store_true", help="write this run's numbers as the baseline")
    ap.add_argument("--only", default="", help=f"comma-separated groups: {', '.join(GROUPS)}")
    ap.add_argument("--tries", type=int, default=1, help="multiply the tries per measure (steadier, slower)")
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    args = ap.parse_args()
    groups = [g for g in (args.only.split(",") if args.only else GROUPS) if g]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        print(f"unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    base = json.loads(args.baseline.read_text())["measures"] if args.baseline.exists() else {}
    now: dict[str, Any] = {}
    started = time.perf_counter()
    print(f"bench-check: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for g in groups:
        t0 = time.perf_counter()
        for name, (value, better, what) in GROUPS[g](args.tries).items():
            now[name] = {"value": round(value, 4), "better": better, "what": what}
            old = base.get(name, {}).get("value")
            print(f"  {name:34} {value:9.3f}   baseline {old if old is not None else '-':>9}   ({better} is better: {what})")
        print(f"  [{g}: {time.perf_counter() - t0:.1f} s]", flush=True)
    print(f"bench-check: {time.perf_counter() - started:.0f} s")
    if args.update:
        merged = {**base, **now}
        args.baseline.write_text(json.dumps({"benchmark": "bench-check", "tolerance": TOLERANCE, "measures": merged,
                                             "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
                                             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n")
        print(f"baseline written: {args.baseline}")
        return 0
    bad = compare(now, base, TOLERANCE)
    for line in bad:
        print(f"REGRESSION {line}")
    if not base:
        print("no baseline yet: run scripts/bench-check --update")
    print("bench-check: " + ("FAILED" if bad else "ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
