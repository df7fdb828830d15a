"""LiteLLMPolicy over real HTTP: a loopback OpenAI-compatible server the test starts.

The same path a local vLLM / llama.cpp / Ollama server takes (`api_base`): litellm's
OpenAI client, n>1 sampling, top-up calls when fewer choices come back, retries
with backoff on rate limits, token counting, and malformed tool-call JSON turned
into an invalid candidate rather than a crash.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from trajgraph import BestOfN, Budget, LiteLLMPolicy, search
from trajgraph.testing import react_calculator_agent
from trajgraph.testing.fake_models import ScriptedToolModel
from trajgraph.testing.tiny_env import calculator_tools


class FakeOpenAI:
    """Answers /chat/completions from a script: "429", or the number of choices to return."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append(body)
            item = self.script.pop(0) if self.script else body.get("n", 1)
        if item == "429":
            return 429, {"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}
        choices = []
        for i in range(int(item)):
            args = "{not json" if (len(self.requests) + i) % 5 == 4 else json.dumps({"a": i, "b": 2})
            call = {"id": f"call_{len(self.requests)}_{i}", "type": "function", "function": {"name": "add", "arguments": args}}
            choices.append({"index": i, "finish_reason": "tool_calls",
                            "message": {"role": "assistant", "content": None, "tool_calls": [call]}})
        return 200, {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 0, "model": "fake",
                     "choices": choices, "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload = fake.next(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    try:
        yield fake, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _policy(api_base: str, **kw: Any) -> LiteLLMPolicy:
    # max_retries=0 for the OpenAI client inside litellm: the backoff under test is trajgraph's own
    return LiteLLMPolicy("openai/fake-model", api_base=api_base, tools=calculator_tools(), extra={"max_retries": 0}, **kw)


def test_n_sampling_top_up_retry_and_token_counts_over_http(server: tuple[FakeOpenAI, str]) -> None:
    fake, api_base = server
    fake.script = ["429", 2]  # rate-limited once, then only 2 of the 4 asked for: two single calls top it up
    policy = _policy(api_base)
    state = {"messages": [HumanMessage(content="add 1 and 2")]}
    out = asyncio.run(policy.propose(state, 4))

    assert len(out) == 4 and all("messages" in o for o in out)
    assert [r.get("n") for r in fake.requests] == [4, 4, 1, 1]  # n>1 first (retried), then the top-ups
    assert fake.requests[0]["tools"][0]["function"]["name"] == "add"  # the agent's tools went along
    assert fake.requests[0]["messages"][-1] == {"role": "user", "content": "add 1 and 2"}
    assert policy.stats.retries == 1 and policy.stats.calls == 3 and policy.stats.samples == 4
    assert policy.stats.prompt_tokens == 3 * 11 and policy.stats.completion_tokens == 3 * 7
    calls = [o["messages"][0] for o in out]
    assert all(c.tool_calls or c.invalid_tool_calls for c in calls)


def test_rate_limits_past_the_retry_budget_surface_as_an_error(server: tuple[FakeOpenAI, str]) -> None:
    fake, api_base = server
    fake.script = ["429"] * 3
    policy = _policy(api_base, max_retries=2)
    import litellm

    with pytest.raises(litellm.RateLimitError):
        asyncio.run(policy.propose({"messages": [HumanMessage(content="hi")]}, 1))
    assert len(fake.requests) == 3 and policy.stats.retries == 2


def test_a_search_over_a_local_server_records_malformed_tool_calls_as_invalid(server: tuple[FakeOpenAI, str]) -> None:
    fake, api_base = server
    agent = react_calculator_agent(ScriptedToolModel(script=["unused: the policy proposes"]))
    result = search(agent, {"messages": [HumanMessage(content="add 1 and 2")]}, decision_node="agent",
                    optimizer=BestOfN(n=3), policy=_policy(api_base), budget=Budget(policy_calls=12))
    assert fake.requests and all(r["model"] == "fake-model" for r in fake.requests)
    assert result.space is not None
    children = result.space.nodes[0].children
    assert children, "the root was expanded with the server's candidates"
    invalid = [n for n in result.space.nodes if n.invalid]
    assert invalid, "the server's malformed arguments became invalid candidates"
    for node in invalid:  # recorded as what the model did, marked, with the reason
        assert "add(<invalid: {not json>)" in node.action_text and node.reason
    assert any(not n.invalid for n in children)
