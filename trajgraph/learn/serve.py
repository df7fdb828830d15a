"""`trajgraph serve FOLDER`: a trained model folder behind a small OpenAI-compatible HTTP server.

Any agent that speaks the OpenAI chat API reaches it, litellm included:
`LiteLLMPolicy("openai/<name>", api_base="http://127.0.0.1:8000/v1")`, or a
LangChain chat model with that base URL. Endpoints: `POST /v1/chat/completions`
(n, temperature, top_p, max_tokens / max_completion_tokens, seed, stop, tools;
no streaming), `GET /v1/models`, `GET /health`.

Why not `transformers serve`: it needs FastAPI and uvicorn (`transformers[serving]`),
which this project does not install, and it parses tool calls only for model
types it knows (Qwen, Gemma) while a SmolLM2 folder trained on tool calls writes
them in the `<tool_call>` layout of `trajgraph.learn.chat_template`. Here the
folder's own chat template renders the prompt (tools included), and
`parse_tool_calls` turns `<tool_call>` blocks back into OpenAI `tool_calls`.
vLLM (`--tool-call-parser hermes`) reads the same folder and the same layout.

Loading reads only safetensors and JSON (`trust_remote_code=False`,
`local_files_only=True`): serving a folder never runs code from it. The standard
library's `ThreadingHTTPServer` answers; one generation runs at a time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from trajgraph._internal.modelfolder import SAFE_LOAD, refuse_remote_code
from trajgraph.errors import ConfigError
from trajgraph.learn.chat_template import parse_tool_calls


@dataclass
class LoadedModel:
    """A model folder loaded for generation: the model, its tokenizer, the name it answers to."""

    model: Any
    tokenizer: Any
    name: str
    lock: threading.Lock

    @classmethod
    def load(cls, folder: str | Path, name: str | None = None, device: str | None = None) -> LoadedModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(folder)
        if not ((path / "config.json").is_file() and any(path.glob("*.safetensors"))):
            raise ConfigError(f"{path}: not a model folder (needs config.json and *.safetensors); train one with `trajgraph train policy`")
        refuse_remote_code(path)  # a received folder never runs its own code (config auto_map)
        model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, **SAFE_LOAD)
        tokenizer = AutoTokenizer.from_pretrained(str(path), **SAFE_LOAD)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))  # type: ignore[arg-type]  # transformers types .to() narrowly
        return cls(model.eval(), tokenizer, name or path.name, threading.Lock())

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        enc = self.tokenizer.apply_chat_template([_message(m) for m in messages], tools=tools or None, add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)
        return list(enc["input_ids"])

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One /v1/chat/completions request body -> the OpenAI response object."""
        import torch

        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        n = int(body.get("n") or 1)
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
        temperature = float(body["temperature"]) if body.get("temperature") is not None else 1.0
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        prompt = self.prompt_ids(messages, body.get("tools"))
        end = self.tokenizer.eos_token_id
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        eos = [t for t in {end, im_end if isinstance(im_end, int) and im_end >= 0 else None} if t is not None]
        ids = torch.tensor([prompt], device=self.model.device)
        sampling = temperature > 0
        devices = [self.model.device.index or 0] if self.model.device.type == "cuda" else []
        with self.lock, torch.inference_mode(), torch.random.fork_rng(devices=devices):
            if body.get("seed") is not None:
                torch.manual_seed(int(body["seed"]))
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=sampling, max_new_tokens=max_tokens,
                                      temperature=temperature if sampling else None, top_p=float(body.get("top_p") or 1.0) if sampling else None,
                                      top_k=0 if sampling else None, num_return_sequences=n, eos_token_id=eos, pad_token_id=eos[0],
                                      stop_strings=stop or None, tokenizer=self.tokenizer)
        choices, completion_tokens = [], 0
        for i, seq in enumerate(out[:, len(prompt):].tolist()):
            stopped = next((j for j, t in enumerate(seq) if t in eos), None)
            tokens = seq[:stopped] if stopped is not None else seq
            completion_tokens += len(tokens) + (stopped is not None)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            finish = "stop" if stopped is not None else "length"
            for s in stop:
                if s in text:
                    text, finish = text[: text.index(s)], "stop"
            content, calls = parse_tool_calls(text) if body.get("tools") else (text, [])
            message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
            if calls:
                message["tool_calls"], finish = calls, "tool_calls"
            choices.append({"index": i, "message": message, "finish_reason": finish, "logprobs": None})
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": self.name,
                "choices": choices, "usage": {"prompt_tokens": len(prompt), "completion_tokens": completion_tokens,
                                              "total_tokens": len(prompt) + completion_tokens}}


def _message(m: Any) -> dict[str, Any]:
    """An OpenAI request message as the chat template reads it: text content, tool-call arguments as parsed JSON."""
    if not isinstance(m, dict):
        raise ValueError("each message must be an object with 'role' and 'content'")
    content = m.get("content")
    if isinstance(content, list):  # content parts: keep the text
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    out: dict[str, Any] = {"role": str(m.get("role") or "user"), "content": "" if content is None else str(content)}
    if m.get("tool_calls"):
        calls = []
        for c in m["tool_calls"]:
            fn = dict(c.get("function") or {})
            if isinstance(fn.get("arguments"), str):
                try:
                    fn["arguments"] = json.loads(fn["arguments"])
                except json.JSONDecodeError:
                    pass  # the template writes text arguments as they are
            calls.append({"type": "function", "function": fn, **({"id": c["id"]} if c.get("id") else {})})
        out["tool_calls"] = calls
    for key in ("name", "tool_call_id"):
        if m.get(key):
            out[key] = m[key]
    return out


def make_server(model: LoadedModel, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server answering the OpenAI chat API from `model` (call `serve_forever()`; port 0 picks a free one)."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model.name, "object": "model", "created": 0, "owned_by": "trajgraph"}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok", "model": model.name})
            else:
                self._send(404, _error(f"no route {self.path}", "not_found"))

        def do_POST(self) -> None:
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(404, _error(f"no route {self.path}", "not_found"))
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if body.get("stream"):
                    raise ValueError("streaming is not supported; send stream=false")
                self._send(200, model.complete(body))
            except (ValueError, TypeError, KeyError) as exc:
                self._send(400, _error(str(exc), "invalid_request_error"))

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet; the CLI prints one line per request instead

    return ThreadingHTTPServer((host, port), Handler)


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None}}


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
          ready: Callable[[ThreadingHTTPServer], None] | None = None) -> None:
    """Load `folder` and answer until interrupted; `ready(server)` is called once it listens."""
    server = make_server(LoadedModel.load(folder, name), host, port)
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    finally:
        server.server_close()


__all__ = ["LoadedModel", "make_server", "serve"]
