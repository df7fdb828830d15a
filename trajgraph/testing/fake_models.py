"""Deterministic chat models that support `bind_tools` (LangChain's fakes do not)."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr


def fake_tool_call(name: str, **args: Any) -> dict[str, Any]:
    """A tool call dict as AIMessage.tool_calls holds it."""
    return {"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"}


class ScriptedToolModel(BaseChatModel):
    """Answers with the next message from a script, cycling; supports `bind_tools`.

    Script items are AIMessages, strings (plain answers) or lists of tool-call
    dicts. Token usage is reported as word counts so budgets can be tested.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    script: list[Any] = Field(default_factory=list)
    latency_s: float = 0.0
    _cursor: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-model"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self  # the script already knows which tools to call

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        with self._lock:
            if self._cursor is None:
                self._cursor = itertools.cycle(self.script or ["done"])
            item = next(self._cursor)
            self.calls += 1
        return _as_message(item, messages)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency_s:
            time.sleep(self.latency_s)
        msg = self._next(messages)
        return ChatResult(generations=[ChatGeneration(message=msg)])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        if self.latency_s:
            import asyncio

            await asyncio.sleep(self.latency_s)
        msg = self._next(messages)
        return ChatResult(generations=[ChatGeneration(message=msg)])


class FakeToolModel(ScriptedToolModel):
    """A model whose reply is computed by `respond(messages, rng) -> item`.

    With a seed it is deterministic per call index; `respond` may sample, which
    makes it a noisy policy for search tests.
    """

    respond: Callable[[list[BaseMessage], random.Random], Any] = Field(default=lambda m, r: "done")
    seed: int = 0
    _rng: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "fake-tool-model"

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        with self._lock:
            if self._rng is None:
                self._rng = random.Random(self.seed)
            self.calls += 1
            item = self.respond(messages, self._rng)
        return _as_message(item, messages)


def _as_message(item: Any, messages: list[BaseMessage]) -> AIMessage:
    prompt_words = sum(len(str(m.content).split()) for m in messages)
    if isinstance(item, AIMessage):
        msg = item.model_copy(deep=True)
    elif isinstance(item, str):
        msg = AIMessage(content=item)
    elif isinstance(item, dict):
        msg = AIMessage(content="", tool_calls=[{**item, "id": f"call_{uuid.uuid4().hex[:8]}"}])
    else:
        calls = [{**c, "id": f"call_{uuid.uuid4().hex[:8]}"} for c in item]
        msg = AIMessage(content="", tool_calls=calls)
    out_words = len(str(msg.content).split()) + 3 * len(msg.tool_calls)
    msg.usage_metadata = {"input_tokens": prompt_words, "output_tokens": out_words, "total_tokens": prompt_words + out_words}
    return msg
