"""The reward model on ONNX Runtime: exported from the model's own safetensors, fp32 or int8 weights.

`torch.onnx.export` traces the loaded `RewardNet` (encoder, mean pooling,
head) into an ONNX graph (`fast="onnx-fp32"` runs it as it is), and onnxruntime's
`quantize_dynamic` turns its MatMul weights into int8 for `fast="onnx-int8"`
(activations are quantized per call, as in torch's dynamic int8). Nothing is downloaded: the graph comes from the weights already
on disk. Export and quantization take a few seconds on two cores, so the
result is cached on disk, keyed by a hash of the model's files and the
versions that made it (`$TRAJGRAPH_CACHE`, else `$XDG_CACHE_HOME/trajgraph`,
else `~/.cache/trajgraph`). An ONNX file is a protobuf: loading it runs no code.

Needs the `onnx` extra: `pip install 'trajgraph[onnx]'` (onnxruntime + onnx).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError, RewardModelError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def available() -> bool:
    """Are onnxruntime and onnx (for quantization) importable here?"""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def cache_root() -> Path:
    explicit = os.environ.get("TRAJGRAPH_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "trajgraph"


def model_key(model_dir: Path, max_length: int) -> str:
    """A hash of the weights, the config and the tools that export: a changed file never reuses an old graph."""
    import onnxruntime
    import torch

    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with open(model_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    h.update(f"|{max_length}|{torch.__version__}|{onnxruntime.__version__}|opset{OPSET}".encode())
    return h.hexdigest()[:32]


GRAPHS = {"onnx-fp32": "model.onnx", "onnx-int8": "model-int8.onnx"}  # path name -> its file in the cache


def cached(path: str, model_dir: Path, max_length: int) -> Path | None:
    """Where this model's graph for `path` lies if it was exported before (`fast="auto"` times it only then)."""
    if not available():
        return None
    graph = _graph_path(path, model_dir, max_length)
    return graph if graph.is_file() else None


def _graph_path(path: str, model_dir: Path, max_length: int) -> Path:
    return cache_root() / "onnx" / model_key(model_dir, max_length) / GRAPHS[path]


def graph(path: str, net: Any, model_dir: Path, max_length: int) -> Path:
    """The ONNX graph of `net` (fp32, CPU) for `path` ("onnx-fp32" or "onnx-int8"), from the cache or made now:
    the fp32 export is kept, and the int8 graph is quantized from it."""
    if not available():
        raise ConfigError(f"fast={path!r} needs onnxruntime and onnx: pip install 'trajgraph[onnx]'")
    out = _graph_path(path, model_dir, max_length)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fp32 = _graph_path("onnx-fp32", model_dir, max_length)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        if not fp32.is_file():
            exported = Path(tmp) / GRAPHS["onnx-fp32"]
            export(net, exported)
            os.replace(exported, fp32)  # atomic: a concurrent loader sees the whole file or none
        if path == "onnx-int8":
            int8 = Path(tmp) / GRAPHS["onnx-int8"]
            quantize(fp32, int8)
            os.replace(int8, out)
    return out


def export(net: Any, path: Path) -> None:
    """Trace `net` (a RewardNet, fp32 on CPU) to an ONNX file; batch and sequence axes stay dynamic."""
    import torch

    example = {
        "input_ids": torch.tensor([[101, 2000, 102], [101, 2001, 102]]),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
        "token_type_ids": torch.zeros(2, 3, dtype=torch.long),
    }
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS} | {"logits": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, and says so per call
            # dynamo=False: the TorchScript exporter needs no onnxscript and traces this small net in ~3 s.
            torch.onnx.export(
                net.eval(), tuple(example[name] for name in INPUTS), str(path), input_names=list(INPUTS),
                output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )
    except Exception as exc:  # the exporter raises many types; the user needs one line
        raise RewardModelError(f"cannot export the reward model to ONNX with torch {torch.__version__} ({exc}); use fast=None") from None


def quantize(src: Path, dst: Path) -> None:
    """int8 weights for every MatMul (per tensor; activations quantized per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():  # it logs a pre-processing hint through the root logger on every call
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def session_runner(path: Path, threads: int) -> Callable[[dict[str, Any]], list[float]]:
    """An onnxruntime session on `threads` CPU threads: numpy inputs -> logits."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the same as torch's, so the paths compete on equal terms
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}  # an encoder without segment ids has no token_type_ids input

    def run(inputs: dict[str, Any]) -> list[float]:
        out = session.run(["logits"], {k: v for k, v in inputs.items() if k in names})[0]
        return [float(x) for x in out]

    return run


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Drop onnxruntime's pre-processing hint, logged on the root logger at every quantization.

    A logger-level filter leaves every other record alone; the NullHandler stops
    `logging.warning` from installing a default stderr handler on an unconfigured root.
    """
    root = logging.getLogger()
    hint = _DropHint()
    spare = logging.NullHandler() if not root.handlers else None
    root.addFilter(hint)
    if spare is not None:
        root.addHandler(spare)
    try:
        yield
    finally:
        root.removeFilter(hint)
        if spare is not None:
            root.removeHandler(spare)


class _DropHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
