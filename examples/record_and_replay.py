"""Record a ReAct agent, list its runs, replay one with no model call, fork it, diff.

Runs offline: the chat model is a scripted fake (`trajgraph.testing`) that calls
the calculator tools twice and then answers.

    python examples/record_and_replay.py [--db example-runs.db]

then look at the same file from the shell:

    trajgraph runs --db example-runs.db
    trajgraph show RUN --db example-runs.db
    trajgraph replay RUN --db example-runs.db --graph examples/record_and_replay.py:build_agent
"""

from __future__ import annotations

import argparse
import warnings

from langchain_core.messages import AIMessage

import trajgraph as tg
from trajgraph.render import render_action
from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent

warnings.filterwarnings("ignore", category=DeprecationWarning)  # create_react_agent's move notice

SCRIPT = [[fake_tool_call("add", a=19, b=23)], [fake_tool_call("multiply", a=42, b=1)], "The answer is 42."]


def build_agent():
    """A zero-argument factory, so `trajgraph replay --graph file.py:build_agent` can rebuild the graph."""
    return react_calculator_agent(ScriptedToolModel(script=SCRIPT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="example-runs.db")
    args = parser.parse_args()
    store = tg.Store(args.db)

    # 1. record: one line around the agent; it is used exactly as before
    model = ScriptedToolModel(script=SCRIPT)
    agent = tg.record(
        react_calculator_agent(model),
        store=store,
        tags=["example"],
        graph_path=f"{__file__}:build_agent",
    )
    out = agent.invoke({"messages": [("user", "What is 19 + 23?")]})
    print("agent said:", out["messages"][-1].content)

    # 2. list runs and look at the steps
    run = store.runs(tag="example", kind="record", limit=1)[0]
    print(f"\nrun {run.id}: {run.status}, {len(store.steps(run.id))} steps, {len(store.model_calls(run.id))} model calls")
    for step in store.steps(run.id):
        print(f"  {step.seq}  {step.node:6} {render_action(step.update)[:60]}")

    # 3. cassette replay: the agent node is answered from the record; tools run again
    calls_before = model.calls
    result = tg.replay(store, run.id, react_calculator_agent(model))
    print(f"\nreplay {result.run_id}: matched={result.matched}, {result.steps} steps compared, "
          f"{result.answered} answered from the record, model calls made: {model.calls - calls_before}")

    # 4. fork at step 2 with a different action: what if the agent had added instead?
    other = {"messages": [AIMessage(content="", tool_calls=[fake_tool_call("add", a=40, b=2)])]}
    forked = tg.replay(store, run.id, react_calculator_agent(ScriptedToolModel(script=["Still 42."])), fork_at=2, action=other)
    print(f"fork {forked.run_id} (parent {forked.parent_id}, step {forked.fork_step}): {forked.output['messages'][-1].content!r}")

    # 5. diff the recording and the fork, step by step
    d = tg.diff(store, run.id, forked.run_id)
    print("diff:", d.counts())
    for row in d.steps:
        if row.status != "same":
            print(f"  {row.status:7} {row.node:6} a#{row.a_seq} b#{row.b_seq}")
    print(f"\nstore: {store.path} (try: trajgraph runs --db {store.path})")


if __name__ == "__main__":
    main()
