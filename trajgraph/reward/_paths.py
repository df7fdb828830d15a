"""The reward model's numeric paths on CPU, and `fast="auto"`: pick the fastest by measuring it.

A CPU flag does not say which path is fastest: on an AMD EPYC with AVX512-BF16
but no AMX, bf16 measured once slower and once faster than fp32 under the
same torch, depending on what else ran. So `auto` builds every candidate,
runs each on one small probe batch, keeps those that rank the batch as fp32
does (Spearman >= `AGREEMENT` against fp32's logits), times them in turns, and
takes the fastest, fp32 included, so it is never slower than fp32 as measured. Dynamic int8
(torch or ONNX Runtime) usually fails the rank check on a trained model (one
activation scale per batch blurs the small feature differences that separate
near-identical prefixes: Spearman 0.68-0.94 measured); bf16 passes (>= 0.999).

The probe costs about a second; its answer is kept per process, per model file
and settings, so loading the same model again does not time it again. ONNX
Runtime int8 is a candidate once the model has been exported (loading it once with
`fast="onnx-int8"` does that, and the export is cached on disk): exporting takes a few
seconds, longer than the whole probe. ONNX Runtime fp32 is never one (see `choose`).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.reward.base import RewardItem

PATHS = ("fp32", "bf16", "int8", "onnx-fp32", "onnx-int8")
AGREEMENT = 0.98  # Spearman against fp32 on the probe batch; bf16 measures >= 0.999, int8 0.68-0.94
MARGIN = 1.10  # a path must beat fp32 by 10% on the probe: noise on a busy machine must not pick a slower one
PROBE_ITEMS, PROBE_TOKENS, PROBE_REPEATS = 12, 40, 3  # ~500 tokens a pass: a fraction of a second on 2 quiet cores

Runner = Callable[[list[Any]], list[float]]  # encoded items -> logits


@dataclass(frozen=True)
class Probe:
    """What `fast="auto"` measured: items/s and rank agreement per path, and the path chosen."""

    chosen: str
    items_per_s: dict[str, float]  # the paths that agree with fp32 (the others are not timed)
    spearman: dict[str, float]  # every path built
    unavailable: dict[str, str] = field(default_factory=dict)  # path -> why it could not be built
    seconds: float = 0.0
    batch: tuple[int, int] = (PROBE_ITEMS, PROBE_TOKENS)  # items x tokens

    def describe(self) -> str:
        parts = [
            (f"{p} {self.items_per_s[p]:.0f}/s" if p in self.items_per_s else f"{p} not timed")
            + f" rho={self.spearman[p]:.3f}" + (" *" if p == self.chosen else "")
            for p in self.spearman
        ]
        return f"auto chose {self.chosen} ({'; '.join(parts)}; probe {self.seconds:.2f}s)"


def build(path: str, net: Any, pad_id: int, model_dir: Path, max_length: int) -> tuple[Runner, Any]:
    """A runner for `path` over the fp32 CPU `net` (left unchanged), and the module it runs (None for ONNX)."""
    import torch

    from trajgraph.reward import _net

    if path == "fp32":
        return torch_runner(net, pad_id), net
    if path == "bf16":
        half = copy.deepcopy(net).to(dtype=torch.bfloat16)
        return torch_runner(half, pad_id), half
    if path == "int8":
        quantized = _net.quantize_int8(net)
        return torch_runner(quantized, pad_id), quantized
    if path in ("onnx-fp32", "onnx-int8"):
        from trajgraph.reward import _onnx

        run = _onnx.session_runner(_onnx.graph(path, net, model_dir, max_length), torch.get_num_threads())
        cpu = torch.device("cpu")
        return (lambda batch: run({k: v.numpy() for k, v in _net.collate(batch, pad_id, cpu).items()})), None
    raise ConfigError(f"fast={path!r}: choose one of {list(PATHS)}")  # pragma: no cover - checked by the caller


def torch_runner(net: Any, pad_id: int, device: Any = None) -> Runner:
    import torch

    from trajgraph.reward import _net

    dev = device if device is not None else torch.device("cpu")

    def run(batch: list[Any]) -> list[float]:
        with torch.inference_mode():
            return net(**_net.collate(batch, pad_id, dev)).tolist()

    return run


_choices: dict[tuple[Any, ...], Probe] = {}
_lock = threading.Lock()


def choose(net: Any, pad_id: int, encoder: Any, model_dir: Path) -> tuple[Probe, Runner, Any]:
    """The fastest path that ranks like fp32, measured once per process for this model and settings."""
    import torch

    from trajgraph.reward import _onnx

    weights = (model_dir / "model.safetensors").stat()
    key = (str(model_dir.resolve()), weights.st_size, weights.st_mtime_ns, encoder.max_length, torch.get_num_threads())
    with _lock:  # two models loading at once measure one at a time: each would slow the other's probe
        probe = _choices.get(key)
        if probe is None:
            # ONNX Runtime int8 competes once the model was exported (fast="onnx-int8" did it): an export takes
            # seconds, more than the whole probe, and is worth it only to those who asked for it. ONNX Runtime
            # fp32 never does: on the Xeon it won the probe's short batch (112 vs 91 items/s) and lost at the
            # scorer's 64 x 100 tokens (72.8 vs 82.9), a probe win that would make auto slower than fp32
            candidates = [p for p in PATHS if p != "onnx-fp32" and (p not in _onnx.GRAPHS or _onnx.cached(p, model_dir, encoder.max_length))]
            probe = measure(net, pad_id, encoder, model_dir, candidates)
            _choices[key] = probe
    run, module = build(probe.chosen, net, pad_id, model_dir, encoder.max_length)
    return probe, run, module


def measure(net: Any, pad_id: int, encoder: Any, model_dir: Path, candidates: list[str]) -> Probe:
    """Check each candidate's ranking against fp32 on one probe batch, then time those that agree
    (interleaved, best of a few): a path that ranks differently is never timed, it cannot win."""
    from trajgraph.reward.metrics import spearman

    t_start = time.perf_counter()
    batch = encoder.encode(probe_items(min(encoder.max_length, PROBE_TOKENS)))
    runners: dict[str, Runner] = {}
    unavailable: dict[str, str] = {}
    for path in candidates:
        try:
            runners[path] = build(path, net, pad_id, model_dir, encoder.max_length)[0]
        except Exception as exc:  # a path this machine cannot run is skipped, and the probe says why
            unavailable[path] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    outputs = {path: run(batch) for path, run in runners.items()}  # also the warm-up: kernels chosen, caches filled
    rho = {path: 1.0 if path == "fp32" else spearman(outputs["fp32"], out) for path, out in outputs.items()}
    timed = [path for path in runners if rho[path] >= AGREEMENT]
    best = dict.fromkeys(timed, math.inf)
    wins = dict.fromkeys(timed, 0)  # rounds in which a path beat fp32 by the margin (the same round's load)
    for rep in range(PROBE_REPEATS):
        took: dict[str, float] = {}
        for path in timed[rep % len(timed) :] + timed[: rep % len(timed)]:  # rotate: no path always runs first
            t0 = time.perf_counter()
            runners[path](batch)
            took[path] = time.perf_counter() - t0
            best[path] = min(best[path], took[path])
        for path in timed:
            wins[path] += took[path] * MARGIN <= took["fp32"]
    rates = {path: len(batch) / t for path, t in best.items()}
    # never slower than fp32: a path must beat it by the margin at its best AND in most rounds, so
    # one lucky round (the load dropped while it ran) cannot pick a path that is slower here
    chosen = "fp32"
    for path in timed:
        if (path != "fp32" and rates[path] >= MARGIN * rates["fp32"] and wins[path] * 2 > PROBE_REPEATS
                and rates[path] > rates[chosen]):
            chosen = path
    return Probe(chosen, rates, rho, unavailable, time.perf_counter() - t_start, (len(batch), max(len(e.ids) for e in batch)))


_WORDS = (
    "open the wooden door take the brass key go north look around read the note climb the ladder "
    "a locked chest rusty lever dark corridor the floor gives way exit room ledge lamp"
).split()


def probe_items(tokens: int) -> list[RewardItem]:
    """Distinct trajectory prefixes long enough to fill `tokens` after truncation (about 6 tokens a word pair)."""
    items = []
    for i in range(PROBE_ITEMS):
        n_turns = tokens // 20 + 1
        turns = tuple(
            (f"{_WORDS[(i + k) % len(_WORDS)]} {_WORDS[(3 * i + k) % len(_WORDS)]}",
             " ".join(_WORDS[(i * k + j) % len(_WORDS)] for j in range(6 + (i + k) % 5)))
            for k in range(n_turns)
        )
        items.append(RewardItem(f"task {i}: {_WORDS[i % len(_WORDS)]} the {_WORDS[(i * 7) % len(_WORDS)]}", turns,
                                _WORDS[(i * 5) % len(_WORDS)]))
    return items


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and the flags that decide these paths (for every benchmark figure)."""
    import torch

    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:  # not Linux: the torch probe below still says what torch will use
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
    return {
        "cpu": model,
        "flags": [f for f in wanted if f in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
