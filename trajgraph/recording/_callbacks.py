"""A LangChain callback handler that records chat-model calls of a recorded run, and the context
variable through which LangChain hands it each model call of the run (record.py, replay)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from trajgraph.recording.instrument import ns_parts
from trajgraph.store.redact import is_secret_name
from trajgraph.trajectory import ModelCall

if TYPE_CHECKING:
    from trajgraph.recording.instrument import Recorder


# The model-call handler of the recorded run whose graph is executing in this context: set while the graph
# computes each chunk (record.py; replay: `reaching_model_calls`), so the caller's code between chunks is not the run's.
# LangChain adds it to the callback manager of each model (and tool) call through a configure hook, so it
# is not an inheritable handler of every runnable in the graph: each LangGraph task, node and chain would
# pay for dispatching to it (on_chain_end and child managers then skip LangChain's shortcut for an empty
# handler list), a cost that only model calls need. Threads that copy the context (LangGraph's and
# LangChain's executors do) reach it too.
ACTIVE: ContextVar[ModelCallRecorder | None] = ContextVar("trajgraph_model_calls", default=None)
_hooked = False
_hook_lock = threading.Lock()


def use_configure_hook() -> None:
    """Register `ACTIVE` with LangChain, once, on the first recorded run (importing trajgraph changes nothing)."""
    global _hooked
    if _hooked:
        return
    from langchain_core.tracers.context import register_configure_hook

    with _hook_lock:
        if not _hooked:
            register_configure_hook(ACTIVE, False)
            _hooked = True


@contextmanager
def reaching_model_calls(handler: ModelCallRecorder) -> Iterator[None]:
    """Model calls made in this context (and in threads and tasks started from it) reach `handler`."""
    use_configure_hook()
    token = ACTIVE.set(handler)
    try:
        yield
    finally:
        ACTIVE.reset(token)


class RunHandler(BaseCallbackHandler):
    """A recorded run's callback handler: inline, deaf to events no recorder reads."""

    run_inline = True  # keep on the caller's thread: cheap, and ordering stays exact
    ignore_agent = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True


class ModelCallRecorder(RunHandler):
    """Captures messages in, message out, parameters, token usage and logprobs."""

    ignore_chain = True

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._open: dict[UUID, dict[str, Any]] = {}
        self._last: tuple[int, list[Any]] | None = None  # (seq, prompt) of the last finished call
        # a cassette replay must call no model: raising here stops the call before it is made
        self.raise_error = recorder.forbid_models

    def _refuse(self, serialized: dict[str, Any] | None) -> None:
        from trajgraph.errors import ReplayError

        name = (serialized or {}).get("name") or "a model"
        raise ReplayError(f"replay diverged: {name} would be called, but a cassette replay calls no model; pass live=True to allow it")

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any) -> None:
        if self.recorder.forbid_models:
            self._refuse(serialized)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.recorder.forbid_models:
            self._refuse(serialized)
        params = dict(invocation_params or kwargs.get("invocation_params") or {})
        model = str(params.get("model") or params.get("model_name") or (metadata or {}).get("ls_model_name") or params.get("_type") or "")
        prompt = list(messages[0]) if messages else []
        ref, shared = None, 0
        last = self._last
        if last is not None:  # the prompt usually extends the previous one: store that part once
            shared = _shared_prefix(last[1], prompt)
            ref = last[0] if shared else None
        self._open[run_id] = {
            "t0": time.perf_counter(),
            "messages": prompt,
            "ref": ref,
            "shared": shared,
            # a credential passed as a call parameter (model.invoke(..., api_key=...)) is never stored
            "params": {k: v for k, v in params.items()
                       if isinstance(v, (str, int, float, bool)) and k != "_type" and not is_secret_name(k)},
            "model": model,
            "step_seq": self._step_of(metadata or {}),
        }

    def _step_of(self, md: dict[str, Any]) -> int | None:
        """The step the call ran in: a nested graph's task (trajgraph/recording/nested.py) or a swapped node."""
        if self.recorder.nested_seqs:
            parts = ns_parts(str(md.get("langgraph_checkpoint_ns") or ""))
            if parts and parts[-1][1] in self.recorder.nested_seqs:
                return self.recorder.nested_seqs[parts[-1][1]]
        return md.get("trajgraph_step")

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._open.pop(run_id, None)
        if call is None:
            return
        gen = response.generations[0][0] if response.generations and response.generations[0] else None
        message = getattr(gen, "message", None)
        usage = getattr(message, "usage_metadata", None) or {}
        info = getattr(gen, "generation_info", None) or {}
        logprobs = None
        token_ids = None
        lp = info.get("logprobs") or (getattr(message, "response_metadata", {}) or {}).get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list):
            logprobs = [t.get("logprob") for t in lp["content"] if isinstance(t, dict)]
        if isinstance(info.get("token_ids"), list):
            token_ids = info["token_ids"]
        seq = self.recorder.allocate_model_call()
        self.recorder.writer.put(
            "model_call",
            ModelCall(
                run_id=self.recorder.run_id,
                seq=seq,
                step_seq=call["step_seq"],
                model=call["model"],
                messages=call["messages"],
                prompt_ref=call["ref"],
                prompt_shared=call["shared"],
                response=message if message is not None else getattr(gen, "text", None),
                params=call["params"],
                prompt_tokens=usage.get("input_tokens"),
                completion_tokens=usage.get("output_tokens"),
                latency_ms=(time.perf_counter() - call["t0"]) * 1000,
                token_ids=token_ids,
                logprobs=logprobs,
            ),
        )
        # only now: a later call may point at this one because its row is queued ahead of the later row
        self._last = (seq, call["messages"])

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._open.pop(run_id, None)
        if call is None:
            return
        self.recorder.writer.put(
            "model_call",
            ModelCall(
                run_id=self.recorder.run_id,
                seq=self.recorder.allocate_model_call(),
                step_seq=call["step_seq"],
                model=call["model"],
                messages=call["messages"],
                params=call["params"],
                prompt_ref=call["ref"],
                prompt_shared=call["shared"],
                latency_ms=(time.perf_counter() - call["t0"]) * 1000,
                error=f"{type(error).__name__}: {error}",
            ),
        )


def _shared_prefix(a: list[Any], b: list[Any]) -> int:
    """How many leading messages two prompts share (the same objects, or equal ones)."""
    n = 0
    for x, y in zip(a, b):
        if x is not y and x != y:
            break
        n += 1
    return n
