"""A chat agent that chooses by tool calls learns from its recorded model calls and search pairs, then is served.

The agent is LangGraph's prebuilt ReAct agent (`react_calculator_agent`) on fake
chat models: recorded runs that call `multiply` and answer, and an MCTS search
whose pairs put `multiply(3, 4)` above `add(3, 4)`. No env-loop keys anywhere.
SmolLM2-135M-Instruct trains on them for two steps on CPU (SFT, then DPO), the
folder is served by `trajgraph.learn.serve` on loopback, and the same agent
reaches it through litellm's `api_base`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

import trajgraph as tg
from tests._export_store import _answered_12, _noisy_calculator
from trajgraph.learn import train_policy
from trajgraph.learn.chat_template import NAME, TOOL_TEMPLATE, parse_tool_calls, renders_tool_calls
from trajgraph.testing import FakeToolModel, ScriptedToolModel, fake_tool_call, react_calculator_agent
from trajgraph.testing.tiny_env import calculator_tools

SETTINGS: dict[str, Any] = dict(max_steps=2, batch_size=1, max_length=384, lr=5e-4)
QUESTION = "what is 3 times 4?"
CALL = {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "multiply", "arguments": {"a": 3, "b": 4}}}]}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chat") / "chat.db"
    store = tg.Store(path)
    agent = tg.record(react_calculator_agent(ScriptedToolModel(script=[[fake_tool_call("multiply", a=3, b=4)], "The answer is 12.0"])),
                      store=store)
    agent.invoke({"messages": [("user", QUESTION)]})
    tg.search(react_calculator_agent(FakeToolModel(respond=_noisy_calculator, seed=1)), {"messages": [("user", QUESTION)]}, decision_node="agent",
              optimizer=tg.MCTS(k=3), budget=tg.Budget(policy_calls=12), outcome=_answered_12, store=store, task="times")
    store.close()
    return path


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)


def _call_logprob(folder: Path) -> float:
    """log P(the multiply tool call as the next assistant turn | the question), under the tool template."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = _tokenizer(folder)
    tok.chat_template = TOOL_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, local_files_only=True, trust_remote_code=False).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template([{"role": "user", "content": QUESTION}, CALL], tokenize=False)
    assert full.startswith(prompt) and "<tool_call>" in full[len(prompt):]
    p, ids = tok(prompt, add_special_tokens=False)["input_ids"], tok(full, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1)
    return float(logp[torch.arange(len(p) - 1, len(ids) - 1), torch.tensor(ids[len(p):])].sum())


def test_the_tool_template_renders_calls_and_the_parser_reads_them_back() -> None:
    from trajgraph.learn.lm import base_model_dir

    tok = _tokenizer(base_model_dir(None))
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    own = tok.apply_chat_template(plain, tokenize=False)
    assert not renders_tool_calls(tok)  # SmolLM2's template drops tool calls: the reason for the swap
    tok.chat_template = TOOL_TEMPLATE
    assert renders_tool_calls(tok) and tok.apply_chat_template(plain, tokenize=False) == own  # no tools: the same text as before
    text = tok.apply_chat_template([{"role": "user", "content": QUESTION}, CALL, {"role": "tool", "content": "12.0", "name": "multiply"}],
                                   tokenize=False)
    reply = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    content, calls = parse_tool_calls(reply)
    assert content == "" and [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [("multiply", {"a": 3, "b": 4})]
    assert "<tool_response>\n12.0\n</tool_response>" in text
    assert parse_tool_calls("let me see <tool_call>{not json}</tool_call>") == ("let me see <tool_call>{not json}</tool_call>", [])


@pytest.fixture(scope="module")
def sft_folder(store_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = tg.sft_dataset(store_path)
    assert rows and all("task" not in m and "observation" not in m for r in rows for m in r["messages"])
    assert any(m.get("tool_calls") for r in rows for m in r["messages"])  # the export keeps the calls
    return train_policy(store_path, tmp_path_factory.mktemp("sft") / "sft", method="sft", **SETTINGS).path


def test_sft_trains_on_the_tool_calls_of_a_react_agent(store_path: Path, sft_folder: Path) -> None:
    from trajgraph.learn.lm import base_model_dir

    card = json.loads((sft_folder / "trajgraph-card.json").read_text())
    assert card["chat_template"] == NAME and card["data"]["sft"] == len(tg.sft_dataset(store_path)) and card["metrics"]["sft"]["steps"] == 2
    assert renders_tool_calls(_tokenizer(sft_folder))  # the folder carries the template it was trained with
    assert _call_logprob(sft_folder) > _call_logprob(base_model_dir(None))  # it learned the call itself, not empty turns


def test_dpo_trains_on_the_searchs_tool_call_pairs(store_path: Path, tmp_path: Path) -> None:
    pairs = tg.dpo_dataset(store_path, trajectory_pairs=False)
    names = {(p["chosen"][0]["tool_calls"][0]["function"]["name"], p["rejected"][0]["tool_calls"][0]["function"]["name"])
             for p in pairs if p["chosen"][0].get("tool_calls") and p["rejected"][0].get("tool_calls")}
    assert ("multiply", "add") in names
    result = train_policy(store_path, tmp_path / "dpo", method="dpo", lora=True, lora_r=4, **{**SETTINGS, "max_steps": 1})
    card = result.card
    assert card["chat_template"] == NAME and card["data"]["dpo"] == len(pairs) and card["metrics"]["dpo"]["steps"] == 1
    # chosen and rejected differ only in the tool's name: with the model's own template both would render as the
    # same empty turn, with the same log-probability
    dpo = card["metrics"]["dpo"]
    assert dpo["last_logps_chosen"] != dpo["last_logps_rejected"]


@pytest.fixture
def served(sft_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from trajgraph.learn.serve import LoadedModel, make_server

    server = make_server(LoadedModel.load(sft_folder, name="smollm2-calc"), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_the_served_folder_answers_the_same_agent_through_litellm(served: str, sft_folder: Path) -> None:
    import litellm

    from trajgraph.policies.lm import load_lm_policy

    messages = [{"role": "user", "content": "Name a colour."}]
    reply = litellm.completion(model="openai/smollm2-calc", api_base=served, messages=messages, temperature=0, max_tokens=12,
                               max_retries=0)
    local, _ = load_lm_policy(sft_folder).model.generate(messages, n=1, temperature=0, max_tokens=12)
    assert reply.choices[0].message.content == local[0].text.strip()  # the server answers from the trained folder's weights
    assert reply.usage.completion_tokens >= 1 and reply.model.endswith("smollm2-calc")

    # the ReAct agent's decision node, proposed by the served model; its tools travel in the request
    policy = tg.LiteLLMPolicy("openai/smollm2-calc", api_base=served, tools=calculator_tools(), temperature=0.7, max_tokens=48,
                              extra={"max_retries": 0})
    agent = react_calculator_agent(ScriptedToolModel(script=["unused: the policy proposes"]))
    result = tg.search(agent, {"messages": [HumanMessage(content=QUESTION)]}, decision_node="agent", optimizer=tg.BestOfN(n=2),
                       policy=policy, budget=tg.Budget(policy_calls=4))
    assert result.space is not None
    children = result.space.nodes[0].children
    assert children and policy.stats.calls >= 1 and policy.stats.completion_tokens > 0  # candidates came from the server


def test_serve_refuses_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trajgraph.cli import app

    (tmp_path / "notes.txt").write_text("not a model")
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", "0"])
    assert result.exit_code == 2 and "not a model folder" in result.output and len(result.output.strip().splitlines()) == 1
