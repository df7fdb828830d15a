"""Record and search agents, then take everything out: TRL datasets, OpenTelemetry spans, the viewer.

    python examples/export_training_data.py [out_dir]

Runs offline on trajgraph's test kit: a scripted tool-calling ReAct agent and the
deceptive-chain environment loop. Then:

    datasets.load_dataset("parquet", data_files="out/sft.parquet")   # -> trl.SFTTrainer
    datasets.load_dataset("parquet", data_files="out/dpo.parquet")   # -> trl.DPOTrainer
    datasets.load_dataset("parquet", data_files="out/prm.parquet")   # -> a PRM trainer
    trajgraph view --db out/runs.db                                  # browse runs and search trees

The same exports from the shell: `trajgraph export sft|dpo|prm|spans OUT --db out/runs.db`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trajgraph as tg
from trajgraph.export import dpo_dataset, prm_dataset, sft_dataset, write_dataset
from trajgraph.export.otel import export_spans
from trajgraph.testing import ScriptedToolModel, deceptive_chain_graph, fake_tool_call, react_calculator_agent
from trajgraph.testing.chain import chain_start


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    store = tg.Store(out / "runs.db")

    # 1. Record: a tool-calling agent (its model calls are kept as they were) and an environment loop.
    model = ScriptedToolModel(script=[[fake_tool_call("add", a=2, b=3)], [fake_tool_call("multiply", a=5, b=4)], "It is 20."])
    agent = tg.record(react_calculator_agent(model), store=store, tags=["demo"])
    agent.invoke({"messages": [("user", "What is (2+3)*4?")]})
    env = tg.record(deceptive_chain_graph(depth=3, skill=0.75, trap=0.15, seed=1), store=store, task=lambda s: s["task"])
    for _ in range(8):  # some reach the exit, some take the trap: success/failure pairs of one task
        env.invoke(chain_start("chain"))

    # 2. Search: RRO with a Monte Carlo process reward records its tree, its rollouts and its step pairs.
    for task in ("chain-a", "chain-b"):
        tg.search(deceptive_chain_graph(depth=3, seed=4, skill=0.7), chain_start(task), decision_node="policy",
                  optimizer=tg.RRO(k_max=3), reward=tg.RolloutValue(n=3), budget=tg.Budget(policy_calls=80),
                  store=store, task=task)

    # 3. Export. Every call reads one consistent snapshot; filters: graph, tag, status, kind, task, outcome, time.
    datasets = {
        "sft": sft_dataset(store),  # successful runs as `messages`
        "dpo": dpo_dataset(store),  # search step pairs + ETO success-vs-failure pairs
        "prm": prm_dataset(store, threshold=0.5),  # search trees as `prompt` / `completions` / `labels`
    }
    for name, rows in datasets.items():
        path = write_dataset(rows, out / f"{name}.parquet")
        print(f"{name}: {len(rows):3d} rows -> {path}")
    example = datasets["sft"][0]["messages"]
    print("an SFT row:", [m["role"] + (" (tool call)" if m.get("tool_calls") else "") for m in example])
    spans = export_spans(store, out / "spans.jsonl", graph="deceptive_chain", kind="search")
    print(f"spans: {spans} -> {out / 'spans.jsonl'} (or an OTLP endpoint: http://localhost:4318/v1/traces)")
    print(f"browse: trajgraph view --db {out / 'runs.db'}")
    store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="trajgraph-export-")))
