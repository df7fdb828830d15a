"""SmolLM2 as an in-process litellm provider: `smollm2/SmolLM2-135M-Instruct`.

After `register_smollm2()`, trajgraph's litellm policy (and any litellm caller) reaches
the local model exactly as it reaches a hosted one:

    litellm.completion(model="smollm2/SmolLM2-135M-Instruct", messages=[...],
                       n=4, temperature=0.7, max_tokens=16, logprobs=True, seed=0)

`n` samples come from one batched `generate`; `usage` counts the prompt once and
every sampled token; with `logprobs=True` each choice carries the model's own
(temperature-1) log-probability of each token it wrote, plus `top_logprobs`
alternatives when asked, and `message.provider_specific_fields["token_ids"]`, so
training data never has to be re-tokenized. No network is touched.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from trajgraph.errors import ConfigError

from .smollm import MODEL_NAME, PROVIDER, Completion, SmolLM2, smollm2

if TYPE_CHECKING:  # litellm is imported on first registration, not with this module
    import httpx
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler, HTTPHandler
    from litellm.types.llms.openai import ChatCompletionUsageBlock
    from litellm.types.utils import GenericStreamingChunk, ModelResponse

_register_lock = threading.Lock()


def _text(content: Any) -> str:
    """OpenAI content may be a list of parts; a 135M text model only reads the text ones."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _messages(messages: list[Any]) -> list[dict[str, str]]:
    return [{"role": str(m.get("role", "user")), "content": _text(m.get("content"))} for m in messages]


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _logprobs(model: SmolLM2, c: Completion) -> dict[str, Any]:
    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        token = model.tokenizer.decode([token_id])
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    content = []
    for t, (token_id, lp) in enumerate(zip(c.token_ids, c.logprobs)):
        tops = [entry(i, v) for i, v in c.top_logprobs[t]] if c.top_logprobs else []
        content.append({**entry(token_id, lp), "top_logprobs": tops})
    return {"content": content}


@runtime_checkable
class _ServesModel(Protocol):
    """The handler register_smollm2 puts in litellm's provider map: it serves `model` (None: the shared one)."""

    model: SmolLM2 | None


def _provider_class() -> type:
    """The CustomLLM subclass, built on first registration so importing this module does not import litellm."""
    from litellm import CustomLLM
    from litellm.types.utils import Choices, Message, Usage

    class _SmolLM2Provider(CustomLLM):
        """litellm custom handler; the model loads on the first call, not at registration."""

        def __init__(self, model: SmolLM2 | None = None) -> None:
            super().__init__()
            self.model = model

        def _model(self) -> SmolLM2:
            if self.model is None:
                self.model = smollm2()
            return self.model

        def _run(self, messages: list[Any], optional_params: dict[str, Any]) -> tuple[list[Completion], int]:
            p = optional_params
            top = int(p.get("top_logprobs") or 0)
            return self._model().generate(
                _messages(messages),
                n=int(p.get("n") or 1),
                temperature=float(p["temperature"]) if p.get("temperature") is not None else 1.0,  # OpenAI default
                max_tokens=int(p.get("max_tokens") or p.get("max_completion_tokens") or 256),
                top_p=float(p["top_p"]) if p.get("top_p") is not None else 1.0,
                seed=p.get("seed"),
                stop=_stop(p.get("stop")),
                top_logprobs=top,
            )

        def _response(self, model: str, model_response: ModelResponse, completions: list[Completion], prompt_tokens: int,
                      p: dict[str, Any]) -> ModelResponse:
            want_logprobs = bool(p.get("logprobs")) or bool(p.get("top_logprobs"))
            choices = []
            for i, c in enumerate(completions):
                message = Message(role="assistant", content=c.text, provider_specific_fields={"token_ids": c.token_ids})
                choices.append(
                    Choices(index=i, finish_reason=c.finish_reason, message=message, logprobs=_logprobs(self._model(), c) if want_logprobs else None)
                )
            completion_tokens = sum(len(c.token_ids) for c in completions)
            model_response.choices = choices
            usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens)
            model_response.usage = usage  # type: ignore[attr-defined]  # a pydantic extra: ModelResponse sets it, never declares it
            model_response.model = model
            model_response.created = int(time.time())
            return model_response

        # litellm's CustomLLM signatures; litellm passes every argument by keyword, **kwargs takes ones it adds later
        def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict, model_response: ModelResponse,
                       print_verbose: Callable, encoding: Any, api_key: Any, logging_obj: Any, optional_params: dict, acompletion: Any = None,
                       litellm_params: Any = None, logger_fn: Any = None, headers: Any = None, timeout: float | httpx.Timeout | None = None,
                       client: HTTPHandler | None = None, **kwargs: Any) -> ModelResponse:
            completions, prompt_tokens = self._run(messages, optional_params)
            return self._response(model, model_response, completions, prompt_tokens, optional_params)

        async def acompletion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict, model_response: ModelResponse,
                              print_verbose: Callable, encoding: Any, api_key: Any, logging_obj: Any, optional_params: dict,
                              acompletion: Any = None, litellm_params: Any = None, logger_fn: Any = None, headers: Any = None,
                              timeout: float | httpx.Timeout | None = None, client: AsyncHTTPHandler | None = None,
                              **kwargs: Any) -> ModelResponse:
            # the forward pass holds the GIL only in short stretches; a thread keeps the event loop free
            completions, prompt_tokens = await asyncio.to_thread(self._run, messages, optional_params)
            return self._response(model, model_response, completions, prompt_tokens, optional_params)

        def _chunks(self, completions: list[Completion], prompt_tokens: int) -> Iterator[GenericStreamingChunk]:
            # generation is not incremental here: the reply arrives as one chunk per choice
            completion_tokens = sum(len(c.token_ids) for c in completions)
            for i, c in enumerate(completions):
                last = i == len(completions) - 1
                usage: ChatCompletionUsageBlock = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
                yield {"text": c.text, "is_finished": last, "finish_reason": c.finish_reason, "usage": usage if last else None, "index": i, "tool_use": None}

        def streaming(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict, model_response: ModelResponse,
                      print_verbose: Callable, encoding: Any, api_key: Any, logging_obj: Any, optional_params: dict, acompletion: Any = None,
                      litellm_params: Any = None, logger_fn: Any = None, headers: Any = None, timeout: float | httpx.Timeout | None = None,
                      client: HTTPHandler | None = None, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
            yield from self._chunks(*self._run(messages, optional_params))

        # an async generator, as litellm's docs write it; CustomLLM annotates `async def -> AsyncIterator`, which reads
        # as a coroutine returning an iterator, and litellm iterates what the call returns without awaiting it
        async def astreaming(  # type: ignore[override]
            self, model: str, messages: list, api_base: str, custom_prompt_dict: dict, model_response: ModelResponse,
            print_verbose: Callable, encoding: Any, api_key: Any, logging_obj: Any, optional_params: dict, acompletion: Any = None,
            litellm_params: Any = None, logger_fn: Any = None, headers: Any = None, timeout: float | httpx.Timeout | None = None,
            client: AsyncHTTPHandler | None = None, **kwargs: Any,
        ) -> AsyncIterator[GenericStreamingChunk]:
            for chunk in self._chunks(*(await asyncio.to_thread(self._run, messages, optional_params))):
                yield chunk

    return _SmolLM2Provider


def register_smollm2(model: SmolLM2 | None = None) -> str:
    """Make `smollm2/...` a litellm model; idempotent. Returns the model string to use.

    Passing `model` (e.g. one loaded from another cache directory) makes the provider use it;
    otherwise the shared instance loads on the first completion."""
    from trajgraph._internal.hermetic import litellm_offline

    litellm_offline()  # before litellm's first import, which otherwise fetches a price list
    import litellm

    with _register_lock:
        for item in litellm.custom_provider_map:
            if item.get("provider") == PROVIDER:
                handler = item["custom_handler"]
                if model is not None:
                    if not isinstance(handler, _ServesModel):
                        raise ConfigError(f"litellm provider {PROVIDER!r} is registered with another handler ({type(handler).__name__}); "
                                          "remove it from litellm.custom_provider_map to serve SmolLM2 under that name")
                    handler.model = model
                break
        else:
            litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": _provider_class()(model)})
    return f"{PROVIDER}/{MODEL_NAME}"
