"""The prebuilt ReAct agent over the SQL question suite (decision node "agent").

`make_sql_agent(model)` gives the agent on any LangChain chat model that supports
tool calling; the module-level `graph` (listed in langgraph.json) runs it on the
offline scripted model `noisy_sql_model`, which only knows the suite's questions,
so `langgraph dev` works without an API key. Input (`SQL_INPUT`):
{"messages": [{"role": "user", "content": "How many employees are there?"}]}.
"""

from __future__ import annotations

from typing import Any

from trajgraph.adapters.sql_tools import noisy_sql_model, sql_agent
from trajgraph.graphs._inputs import ExpectedInput, expect_input, messages_problem

EXAMPLE = {"messages": [{"role": "user", "content": "How many employees are there?"}]}

SQL_INPUT = ExpectedInput(
    graph="sql_react",
    required={"messages": (list, str)},
    optional={"remaining_steps": int},
    example=EXAMPLE,
    check=lambda value: messages_problem(value["messages"]) if value["messages"] else "'messages' is empty: ask a question",
)


def make_sql_agent(model: Any) -> Any:
    """Compiled ReAct agent (no checkpointer) with list_tables / describe_table / run_sql."""
    return sql_agent(model)


graph = expect_input(make_sql_agent(noisy_sql_model(skill=0.7, seed=0)), SQL_INPUT)

__all__ = ["make_sql_agent", "graph", "SQL_INPUT", "EXAMPLE"]
