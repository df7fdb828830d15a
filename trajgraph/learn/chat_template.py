"""A tool-calling chat template for models whose own template drops tool calls, and its parser.

SmolLM2-135M-Instruct's ChatML template renders only `role` and `content`: an
assistant turn that calls a tool (`content: ""`, `tool_calls: [...]`) renders as
an empty turn, so SFT would learn nothing from it and DPO would see the chosen and
the rejected call as the same text. `ensure_tool_template` swaps in the ChatML
layout that Qwen2.5 and Hermes use for tools (tool schemas in the system turn,
each call as `<tool_call>{"name", "arguments"}</tool_call>`, each result as a user
turn in `<tool_response>`), which the saved tokenizer carries, so whatever serves
the folder renders prompts the way training did; `parse_tool_calls` turns a
generated reply back into OpenAI `tool_calls` (what `trajgraph serve` answers).
Messages without tools render exactly as the model's own template did.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

NAME = "trajgraph-chatml-tools"

_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

TOOL_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- '" + _SYSTEM + "' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n"
    "</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + _SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{%- if not (loop.first and tools) %}{{- '<|im_start|>system\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' + (message['content'] or '') }}"
    "{%- for call in message['tool_calls'] or [] %}"
    "{%- set fn = call['function'] if call['function'] is defined and call['function'] else call %}"
    "{%- if message['content'] or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + fn['name'] + '\", \"arguments\": ' }}"
    "{%- if fn['arguments'] is string %}{{- fn['arguments'] }}{%- else %}{{- fn['arguments'] | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_PROBE = [{"role": "user", "content": "x"},
          {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "trajgraph_probe", "arguments": {}}}]}]


def renders_tool_calls(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template writes an assistant's tool calls into the text."""
    try:
        text = tokenizer.apply_chat_template(_PROBE, tokenize=False)
    except Exception:  # a template that raises on tool calls (some check roles) does not render them
        return False
    return "trajgraph_probe" in str(text)


def uses_tools(rows: list[dict[str, Any]]) -> bool:
    """Whether any training row holds tool schemas, tool calls or tool results."""
    def chat(value: Any) -> bool:
        return isinstance(value, list) and any(isinstance(m, dict) and (m.get("tool_calls") or m.get("role") == "tool") for m in value)
    return any(r.get("tools") or any(chat(v) for v in r.values()) for r in rows)


def ensure_tool_template(tokenizer: Any) -> bool:
    """Give the tokenizer `TOOL_TEMPLATE` if its own template drops tool calls; True when it was swapped."""
    if renders_tool_calls(tokenizer):
        return False
    tokenizer.chat_template = TOOL_TEMPLATE
    return True


def training_chat(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as training rows hold them: tool-call arguments as JSON text.

    Arrow (`datasets`) stores a column of dicts as one struct type, so rows whose
    calls have different argument names would come back with every name, the
    missing ones null; text keeps each call's arguments exactly."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = dict(c.get("function") or {})
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
                calls.append({"type": "function", "function": fn, **({"id": c["id"]} if c.get("id") else {})})
            m["tool_calls"] = calls
        out.append(m)
    return out


_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """A generated reply as (content, OpenAI tool calls): each `<tool_call>{json}</tool_call>` block becomes a call.

    A block that is not JSON with a `name` stays in the content (the caller sees what the model wrote)."""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in _CALL.finditer(text):
        try:
            data = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            continue
        args = data.get("arguments", {})
        kept.append(text[last:match.start()])
        last = match.end()
        calls.append({"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                      "function": {"name": data["name"], "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}})
    kept.append(text[last:])
    return "".join(kept).strip(), calls


__all__ = ["NAME", "TOOL_TEMPLATE", "renders_tool_calls", "uses_tools", "ensure_tool_template", "training_chat", "parse_tool_calls"]
