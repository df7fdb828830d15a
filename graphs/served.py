"""The two user stories, served: a recorded agent and an optimized agent (langgraph.json).

Both wrap the SQL ReAct agent of `trajgraph.graphs.sql_react` (offline scripted
model, decision node "agent") and write to one trajgraph store: the file named by
$TRAJGRAPH_DB, else ./trajgraph.db in the server's working folder (the same default
as the `trajgraph` CLI, so `trajgraph runs` and `trajgraph view` find the runs).

- `recorded`: `tg.record(agent)`. Every run lands in the store as a run of kind
  "record" with its steps and model calls, named "sql_react".
- `optimized`: `tg.optimize(agent, decision_node="agent", optimizer=tg.BestOfN(n=6))`.
  Every run is a search: the agent's own model samples six whole trajectories
  and the run answers with the best one. The store gets a run of kind "search"
  (metadata: optimizer, budget, what it spent) with its tree in `search_nodes`,
  each finished trajectory as a "rollout" run, the returned one tagged "best".
  The outcome here reads the suite's answer key (a test result); an agent without
  one is scored by `reward=tg.LocalRewardModel(path)` or `tg.LLMJudge(model)` instead.

Input of both (`EXAMPLE`): {"messages": [{"role": "user", "content": "How many employees are there?"}]};
the suite's 30 questions are `trajgraph.adapters.sql_tools.questions()`. Another
question gets "I don't know." from the scripted model.

Nothing here blocks the server's event loop: the store is opened when the server
imports this module (in a worker thread), recorded rows go to the store's writer
thread, and a search writes its tree off the loop.
"""

from __future__ import annotations

import os
from typing import Any

import trajgraph as tg
from trajgraph.adapters.sql_data import answer_matches, questions
from trajgraph.adapters.sql_tools import noisy_sql_model
from trajgraph.graphs._inputs import expect_input
from trajgraph.graphs.sql_react import EXAMPLE, SQL_INPUT, make_sql_agent

STORE_ENV = "TRAJGRAPH_DB"
DEFAULT_STORE = "trajgraph.db"

_QUESTIONS = {q.text: q for q in questions()}


def store_path() -> str:
    """$TRAJGRAPH_DB, else ./trajgraph.db."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def _text(message: Any) -> tuple[str, str]:
    """(role, text) of a LangChain message or an OpenAI-style dict."""
    if isinstance(message, dict):
        return str(message.get("role") or message.get("type") or ""), str(message.get("content") or "")
    if isinstance(message, (tuple, list)) and len(message) == 2:
        return str(message[0]), str(message[1])
    content = getattr(message, "content", "")
    if isinstance(content, list):
        content = " ".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(getattr(message, "type", "")), str(content)


def question_of(state: Any) -> str | None:
    """The suite's id of the question a state (or an input) asks, or None for another question."""
    messages = state.get("messages") if isinstance(state, dict) else None
    if isinstance(messages, str):
        messages = [("user", messages)]
    for message in messages or []:
        role, text = _text(message)
        if role in ("user", "human"):
            q = _QUESTIONS.get(text.strip())
            return q.id if q is not None else None
    return None


def outcome(state: dict[str, Any]) -> float | None:
    """1.0 when the final answer states the suite's answer, 0.0 when it does not; None while tools are called
    or when the question is not one of the suite's."""
    messages = state.get("messages") or []
    if not messages or getattr(messages[-1], "tool_calls", None) or _text(messages[-1])[0] != "ai":
        return None
    qid = question_of(state)
    answer = next((q.answer for q in _QUESTIONS.values() if q.id == qid), None)
    return None if answer is None else float(answer_matches(_text(messages[-1])[1], answer))


store = tg.Store(store_path())

recorded = expect_input(
    tg.record(make_sql_agent(noisy_sql_model(skill=0.7, seed=0)), store=store, name="sql_react", task=question_of,
              tags=("served",), graph_path="trajgraph.graphs.served:recorded"),
    SQL_INPUT,
)

optimized = expect_input(
    tg.optimize(make_sql_agent(noisy_sql_model(skill=0.5, seed=1)), decision_node="agent", optimizer=tg.BestOfN(n=6),
                outcome=outcome, budget=tg.Budget(policy_calls=60), store=store, name="sql_react", task=question_of,
                tags=("served",)),
    SQL_INPUT,
)

__all__ = ["recorded", "optimized", "store", "store_path", "outcome", "question_of", "EXAMPLE", "STORE_ENV"]
