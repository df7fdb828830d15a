"""Secrets stay out (issue 11, item 7): credentials passed as call parameters are never stored,
and a redaction hook (on by default) rewrites every text the store writes and so every export."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

import trajgraph as tg
from trajgraph.store import Store
from trajgraph.store.redact import is_secret_name, redact_secrets

KEY = "sk-proj-" + "A1b2C3d4" * 4
AWS = "AKIA" + "ABCDEFGHIJKLMNOP"


class S(TypedDict, total=False):
    messages: Annotated[list[Any], add_messages]
    log: str


def _graph() -> Any:
    model = FakeListChatModel(responses=["done"])

    def agent(state: S) -> dict[str, Any]:
        reply = model.invoke(state["messages"], api_key=KEY, openai_organization="org-1", temperature=0.2)
        return {"messages": [reply]}

    def tool(state: S) -> dict[str, Any]:  # a tool that echoes what it was configured with
        return {"log": f"curl -H 'Authorization: Bearer {KEY}' aws={AWS} password=hunter2",
                "messages": [HumanMessage(content=f'{{"api_key": "{KEY}", "n": 1}}')]}

    g = StateGraph(S)
    g.add_node("agent", agent)
    g.add_node("tool", tool)
    g.add_edge(START, "agent")
    g.add_edge("agent", "tool")
    g.add_edge("tool", END)
    return g.compile()


def _all_text(path: Path) -> str:
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return "\n".join(str(row) for t in tables for row in conn.execute(f"SELECT * FROM {t}"))


def test_credentials_never_reach_the_store_or_the_spans(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = Store(path)
    tg.record(_graph(), store=store).invoke({"messages": [("user", "go")]})
    (call,) = store.model_calls()
    assert "api_key" not in call.params and call.params.get("temperature") == 0.2  # dropped, the rest kept
    text = _all_text(path)
    for secret in (KEY, AWS, "hunter2"):
        assert secret not in text, secret
    (run,) = store.runs()
    assert "Bearer [REDACTED]" in run.output["log"] and run.output["messages"][-1].content == '{"api_key": "[REDACTED]", "n": 1}'
    spans = tmp_path / "spans.jsonl"
    assert tg.export_spans(store, str(spans)) > 0
    exported = spans.read_text()
    assert KEY not in exported and AWS not in exported and "hunter2" not in exported


def test_redaction_hook_per_recording_and_off(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    tg.record(_graph(), store=store, redact=lambda text: text.replace("hunter2", "[pw]")).invoke({"messages": [("user", "go")]})
    tg.record(_graph(), store=store, redact=None).invoke({"messages": [("user", "go")]})
    custom, raw = sorted(store.runs(), key=lambda r: r.started_at)
    assert "password=[pw]" in custom.output["log"] and KEY in custom.output["log"]  # the hook replaces the default
    assert "password=hunter2" in raw.output["log"]  # off: as it was
    assert all("api_key" not in c.params for c in store.model_calls())  # parameters: never, whatever the hook


def test_default_patterns() -> None:
    assert redact_secrets('{"x-api-key": "abc", "max_tokens": 5, "token_ids": [1]}') == '{"x-api-key": "[REDACTED]", "max_tokens": 5, "token_ids": [1]}'
    assert redact_secrets("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG ok") == "AWS_SECRET_ACCESS_KEY=[REDACTED] ok"
    assert redact_secrets("ghp_" + "a" * 36 + " and xoxb-1234567890-abc") == "[REDACTED] and [REDACTED]"
    assert redact_secrets("the skeleton key-ring sk-short") == "the skeleton key-ring sk-short"  # no false alarm
    assert redact_secrets("curl -H 'Authorization: Bearer abc.DEF-ghi_123'") == "curl -H 'Authorization: Bearer [REDACTED]'"
    assert redact_secrets('{"auth": "Basic dXNlcjpwYXNz"}') == '{"auth": "Basic [REDACTED]"}'
    assert [n for n in ("api_key", "openai_api_key", "max_tokens", "access_token", "top_p") if is_secret_name(n)] == [
        "api_key", "openai_api_key", "access_token"]
