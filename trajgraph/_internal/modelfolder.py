"""Model folders received from elsewhere are data, never code.

Every `from_pretrained` in trajgraph passes `SAFE_LOAD` (no remote code, no
download, so transformers never prompts on stdin), and a folder whose
config.json or tokenizer_config.json asks for its own code (`auto_map`) is
refused before transformers reads it. Size fields of cards and configs are
bounded before anything is allocated from them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError

SAFE_LOAD: dict[str, Any] = {"trust_remote_code": False, "local_files_only": True}
_CODE_FIELDS = ("auto_map", "custom_pipelines")
_CODE_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json", "generation_config.json")


def refuse_remote_code(path: str | Path, error: type[Exception] = ConfigError) -> None:
    """Raise `error` in one line when a model folder's JSON asks transformers to run the folder's own code."""
    for name in _CODE_FILES:
        file = Path(path) / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise error(f"{file}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise error(f"{file}: must be a JSON object, got {type(data).__name__}")
        for field in _CODE_FIELDS:
            if field in data:
                raise error(f"{file}: field {field!r} asks to run code shipped in the folder; trajgraph never runs "
                            f"a model folder's code (remove {field!r}, or use a standard transformers architecture)")


def bounded_int(value: Any, name: str, where: str, lo: int, hi: int, error: type[Exception] = ConfigError) -> int:
    """`value` as an int in [lo, hi], or one `error` naming the field (a bool, a float or text is ill-typed)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where}: {name!r} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise error(f"{where}: {name!r} = {value} is out of range [{lo}, {hi}]")
    return value


def finite_number(value: Any, name: str, where: str, lo: float = 0.0, error: type[Exception] = ConfigError) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < lo:
        raise error(f"{where}: {name!r} must be a finite number >= {lo:g}, got {value!r}")
    return float(value)


# Bounds for a transformers config before `from_config` allocates from it.
_CONFIG_BOUNDS = {"hidden_size": 16_384, "intermediate_size": 131_072, "num_hidden_layers": 512, "num_attention_heads": 1024,
                  "vocab_size": 1_048_576, "max_position_embeddings": 1_048_576, "type_vocab_size": 1024, "num_key_value_heads": 1024}
MAX_PARAMETERS = 4_000_000_000


def check_config_sizes(config: dict[str, Any], where: str, error: type[Exception] = ConfigError) -> None:
    """Bound the size fields of a transformers config and the parameter count they imply."""
    for name, hi in _CONFIG_BOUNDS.items():
        if name in config:
            bounded_int(config[name], name, where, 1, hi, error)
    h, layers = int(config.get("hidden_size", 1)), int(config.get("num_hidden_layers", 1))
    inter, vocab = int(config.get("intermediate_size", 4 * h)), int(config.get("vocab_size", 1))
    estimate = vocab * h + layers * (4 * h * h + 3 * h * inter)
    if estimate > MAX_PARAMETERS:
        raise error(f"{where}: its sizes imply about {estimate:.2g} parameters (more than {MAX_PARAMETERS:.0e}); refusing to allocate")


__all__ = ["SAFE_LOAD", "refuse_remote_code", "bounded_int", "finite_number", "check_config_sizes", "MAX_PARAMETERS"]
