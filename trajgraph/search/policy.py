"""Where candidate actions come from when not from the agent's own decision node.

`policy=` in `optimize()` takes any object with `async propose(state, k) -> list`
(a list of decision-node updates). Ready ones here:

- `LiteLLMPolicy("openai/gpt-4o-mini")`: any litellm model string (with `api_base`
  for local OpenAI-compatible servers), n>1 sampling where the provider honours
  it, bounded concurrency, retries with backoff, token and cost counting.
- `ChatModelPolicy(chat_model)`: any LangChain chat model, k concurrent calls.

Both speak two agent shapes: env loops (state has `observation` and admissible
`actions`; the update is {"action": str}) and message agents (state has
`messages`; the update is {"messages": [AIMessage]} with tool calls). A malformed
output becomes an invalid candidate that the search records, never a crash.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from trajgraph._internal.hermetic import alitellm, litellm_offline


@runtime_checkable
class Policy(Protocol):
    async def propose(self, state: dict[str, Any], k: int) -> list[Any]: ...


@dataclass
class PolicyStats:
    calls: int = 0
    samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    invalid: int = 0


def env_prompt(state: dict[str, Any]) -> list[dict[str, str]]:
    """A plain prompt for env loops: objective, recent turns, admissible commands."""
    lines = [f"Task: {state.get('task', '')}"]
    for turn in (state.get("history") or [])[-6:]:
        lines.append(f"> {turn.get('action')}\n{turn.get('observation', '')}")
    lines.append(f"Now: {state.get('observation', '')}")
    if state.get("reflections"):
        lines.append("Lessons from earlier attempts: " + " | ".join(state["reflections"][-3:]))
    actions = state.get("actions") or []
    if actions:
        lines.append("Admissible commands: " + ", ".join(actions))
    lines.append("Reply with exactly one command and nothing else.")
    return [
        {"role": "system", "content": "You play a text game. Choose the next command."},
        {"role": "user", "content": "\n".join(lines)},
    ]


def parse_env_action(text: str, state: dict[str, Any]) -> dict[str, str]:
    """First line, stripped of quotes and prompts; matched case-insensitively to an admissible command."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    line = line.strip().strip("`'\".").removeprefix("> ").strip()
    for cmd in state.get("actions") or []:
        if cmd.lower() == line.lower():
            return {"action": cmd}
    return {"action": line}  # not admissible: the search marks it invalid


def _to_openai_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    from langchain_core.messages import convert_to_openai_messages

    return convert_to_openai_messages(list(messages))


def _ai_message(choice_message: Any) -> Any:
    """An OpenAI-style message -> AIMessage; bad tool-call JSON lands in invalid_tool_calls."""
    from langchain_core.messages import AIMessage

    content = getattr(choice_message, "content", None) or ""
    calls, invalid = [], []
    for tc in getattr(choice_message, "tool_calls", None) or []:
        fn = tc.function if hasattr(tc, "function") else tc["function"]
        name = getattr(fn, "name", None) or fn.get("name")
        raw = getattr(fn, "arguments", None) if hasattr(fn, "arguments") else fn.get("arguments")
        call_id = getattr(tc, "id", None) or (tc.get("id") if isinstance(tc, dict) else None)
        try:
            args = json.loads(raw or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments are not an object")
            calls.append({"name": name, "args": args, "id": call_id, "type": "tool_call"})
        except (ValueError, TypeError) as exc:
            invalid.append({"name": name, "args": raw, "id": call_id, "error": str(exc), "type": "invalid_tool_call"})
    return AIMessage(content=content, tool_calls=calls, invalid_tool_calls=invalid)


@dataclass
class LiteLLMPolicy:
    """k candidates from a litellm model; concurrent and bounded."""

    model: str
    api_base: str | None = None
    temperature: float = 1.0
    max_tokens: int = 256
    tools: Sequence[Any] = ()
    use_n: bool = True  # ask for n=k in one call; topped up with single calls if fewer come back
    max_concurrency: int = 8
    max_retries: int = 4
    extra: dict[str, Any] = field(default_factory=dict)
    stats: PolicyStats = field(default_factory=PolicyStats)

    def __post_init__(self) -> None:
        litellm_offline()  # only litellm's price list: HF and LangGraph settings stay the user's
        self._sem: asyncio.Semaphore | None = None
        self.name = f"litellm:{self.model}"

    async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
        chat = "messages" in state and "observation" not in state
        messages = _to_openai_messages(state["messages"]) if chat else env_prompt(state)
        choices: list[Any] = []
        if self.use_n and k > 1:
            choices = await self._call(messages, n=k, chat=chat)
        missing = k - len(choices)
        if missing > 0:
            more = await asyncio.gather(*(self._call(messages, n=1, chat=chat) for _ in range(missing)))
            choices += [c for batch in more for c in batch]
        out: list[Any] = []
        for choice in choices[:k]:
            if chat:
                out.append({"messages": [_ai_message(choice.message)]})
            else:
                out.append(parse_env_action(choice.message.content or "", state))
        return out

    async def _call(self, messages: list[dict[str, Any]], *, n: int, chat: bool) -> list[Any]:
        litellm = await alitellm()

        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_concurrency)
        kwargs: dict[str, Any] = dict(model=self.model, messages=messages, temperature=self.temperature,
                                      max_tokens=self.max_tokens, n=n, **self.extra)
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if chat and self.tools:
            from langchain_core.utils.function_calling import convert_to_openai_tool

            kwargs["tools"] = [convert_to_openai_tool(t) for t in self.tools]
        async with self._sem:
            for attempt in range(self.max_retries + 1):
                try:
                    response = await litellm.acompletion(**kwargs)
                    break
                except (litellm.RateLimitError, litellm.Timeout, litellm.APIConnectionError, litellm.ServiceUnavailableError):
                    if attempt == self.max_retries:
                        raise
                    self.stats.retries += 1
                    await asyncio.sleep(min(8.0, 0.25 * 2**attempt) * (1 + random.random()))
        self.stats.calls += 1
        self.stats.samples += len(response.choices)
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.stats.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            self.stats.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            self.stats.cost_usd += float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # unknown/local models have no price
            pass
        return list(response.choices)


@dataclass
class ChatModelPolicy:
    """k candidates from any LangChain chat model, as k concurrent calls."""

    model: Any
    tools: Sequence[Any] = ()
    stats: PolicyStats = field(default_factory=PolicyStats)

    def __post_init__(self) -> None:
        self._bound = self.model.bind_tools(list(self.tools)) if self.tools else self.model
        self.name = f"chat:{type(self.model).__name__}"

    async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
        chat = "messages" in state and "observation" not in state
        prompt = list(state["messages"]) if chat else env_prompt(state)
        replies = await asyncio.gather(*(self._bound.ainvoke(prompt) for _ in range(k)), return_exceptions=True)
        out: list[Any] = []
        for reply in replies:
            self.stats.calls += 1
            if isinstance(reply, BaseException):
                out.append(reply)  # the space turns it into an invalid candidate
                continue
            usage = getattr(reply, "usage_metadata", None) or {}
            self.stats.prompt_tokens += int(usage.get("input_tokens") or 0)
            self.stats.completion_tokens += int(usage.get("output_tokens") or 0)
            out.append({"messages": [reply]} if chat else parse_env_action(str(reply.content), state))
        return out


def as_policy(policy: Any) -> Any:
    """None -> None (the agent's own node); a string -> LiteLLMPolicy; a chat model -> ChatModelPolicy."""
    if policy is None or isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        return LiteLLMPolicy(policy)
    if hasattr(policy, "ainvoke") and hasattr(policy, "bind_tools"):
        return ChatModelPolicy(policy)
    from trajgraph.errors import ConfigError

    raise ConfigError(f"policy must be a litellm model string, a LangChain chat model or have propose(state, k); got {type(policy).__name__}")


async def complete_text(llm: Any, prompt: str, *, max_tokens: int = 400) -> str:
    """One completion from a litellm model string or a LangChain chat model."""
    if isinstance(llm, str):
        litellm = await alitellm()
        response = await litellm.acompletion(model=llm, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens)
        return response.choices[0].message.content or ""
    reply = await llm.ainvoke(prompt)
    return str(getattr(reply, "content", reply))


__all__ = ["Policy", "LiteLLMPolicy", "ChatModelPolicy", "PolicyStats", "env_prompt", "parse_env_action", "as_policy", "complete_text"]
