"""Optimize a prebuilt ReAct agent at its decision node, then use it as a node.

Runs offline: the chat model is a seeded fake that picks the wrong tool 60% of the
time. Greedy (the agent as it is) often answers wrong; best-of-n and MCTS at a
budget of 12 model calls find the right tool call and the store keeps the tree.

    python examples/optimize_react_agent.py
"""

from __future__ import annotations

import random

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph

import trajgraph as tg
from trajgraph.testing import FakeToolModel, fake_tool_call, react_calculator_agent


def respond(messages, rng: random.Random):
    if messages[-1].type == "human":
        tool = "multiply" if rng.random() < 0.4 else "add"
        return [fake_tool_call(tool, a=6, b=7)]
    return f"The answer is {messages[-1].content}"


def outcome(state) -> float | None:
    last = state["messages"][-1]
    if last.type != "ai" or last.tool_calls:
        return None
    return 1.0 if "42" in str(last.content) else 0.0


def main() -> None:
    store = tg.Store("example-optimize.db")
    for optimizer in (tg.Greedy(), tg.BestOfN(), tg.MCTS(k=3)):
        wins = 0
        for seed in range(10):
            agent = react_calculator_agent(FakeToolModel(respond=respond, seed=seed))
            best = tg.optimize(agent, decision_node="agent", optimizer=optimizer, outcome=outcome,
                               budget=tg.Budget(policy_calls=12), store=store)
            out = best.invoke({"messages": [("user", "What is 6 times 7?")]})
            wins += outcome(out) == 1.0
        print(f"{optimizer.name:>10}: {wins}/10 correct")

    # an optimized agent is a compiled graph: use it as one node of a larger graph
    solver = tg.optimize(react_calculator_agent(FakeToolModel(respond=respond, seed=1)), decision_node="agent",
                         optimizer=tg.MCTS(), outcome=outcome, budget=tg.Budget(policy_calls=12), store=store)

    def polish(state: MessagesState) -> dict:
        return {"messages": [("ai", f"Final: {state['messages'][-1].content}")]}

    parent = StateGraph(MessagesState)
    parent.add_node("solver", solver)
    parent.add_node("polish", polish)
    parent.add_edge(START, "solver")
    parent.add_edge("solver", "polish")
    parent.add_edge("polish", END)
    print(parent.compile().invoke({"messages": [HumanMessage("What is 6 times 7?")]})["messages"][-1].content)
    search_run = store.runs(kind="search", limit=1)[0]
    print(f"search tree of the last run: {len(store.search_nodes(search_run.id))} nodes; "
          f"see it with: trajgraph show {search_run.id[:12]} --db example-optimize.db --tree")


if __name__ == "__main__":
    main()
