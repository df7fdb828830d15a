"""The prebuilt ReAct agent over the SQL question suite (decision node "agent").

`make_sql_agent(model)` gives the agent on any LangChain chat model that supports
tool calling; the module-level `graph` (listed in langgraph.json) runs it on the
offline scripted model `noisy_sql_model`, which only knows the suite's questions,
so `langgraph dev` works without an API key. Ask it e.g. "How many employees are there?".
"""

from __future__ import annotations

from typing import Any

from trajgraph.adapters.sql_tools import noisy_sql_model, sql_agent


def make_sql_agent(model: Any) -> Any:
    """Compiled ReAct agent (no checkpointer) with list_tables / describe_table / run_sql."""
    return sql_agent(model)


graph = make_sql_agent(noisy_sql_model(skill=0.7, seed=0))

__all__ = ["make_sql_agent", "graph"]
