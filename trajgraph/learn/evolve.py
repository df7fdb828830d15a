"""`evolve`: rounds of search -> train -> evaluate, chosen on a validation split, resumable.

Expert iteration (Anthony et al. 2017; ReST, Gulcehre et al. 2023): the search is
the expert, the policy learns what it found at every node it expanded
(`trajgraph.learn.targets`), and a better policy (and value model) make the next
search better. Round r:

1. evaluates the current policy (greedy at its best decoding, and the search
   with the current value model) on the validation split and the test split;
2. from round 1 on, promotes the candidate trained in round r-1 only if it beats
   the incumbent on *validation* (success of greedy and search, then mean score);
   a candidate that does not is refused and the loop stops ("validation stopped
   improving"): the test split never decides anything;
3. searches the training split (minus validation) with the current policy and
   value model, trains the next policy on the training data gathered so far
   (`mix="all"`) or on this round's only (`mix="recent"`), and with
   `retrain_reward` fits the next value model on the same data.

Every run carries the round, split, policy version and value-model version
(name + content hash) in its tags and metadata. After each step the loop writes
`evolve-state.json` to `out`; a killed `evolve` called again with the same
arguments resumes from there (finished evaluations and searches are not redone).
The round table goes to `evolve.json`, the learning curve (greedy and search,
test and validation, per round) to `evolve.png`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.learn.baseline import TEMPERATURES, best_decoding
from trajgraph.learn.graph import as_node_policy, policy_version
from trajgraph.learn.train import train_policy
from trajgraph.policies.head import TrainablePolicy, load_trainable_policy, trainable_policy
from trajgraph.store import Store

STATE = "evolve-state.json"
MIXES = ("all", "recent")


@dataclass
class RoundResult:
    """One row of the evolve table: policy r (and value model r) on validation and test, and what round r searched."""

    round: int
    policy: str
    policy_hash: str | None
    train_search_success: float | None  # policy r's search on the training split (None: no search this round)
    decisions: int | None  # what policy r+1 was trained on
    preferences: int | None
    test_greedy: float
    test_search: float
    test_greedy_score: float
    test_search_score: float
    wall_s: float
    val_greedy: float = 0.0
    val_search: float = 0.0
    val_greedy_score: float = 0.0
    val_search_score: float = 0.0
    greedy_temperature: float = 0.0  # the decoding of the greedy rows (round 0: chosen on the training split)
    promoted: bool = True  # round 0: the starting policy; later: beat the incumbent on validation
    targets: int | None = None  # soft targets policy r+1 learned from
    value_model: dict[str, Any] | None = None  # name, hash, val_auc of the value model the search used
    next_value_model: dict[str, Any] | None = None  # the one trained this round, for round r+1


@dataclass
class EvolveReport:
    rounds: list[RoundResult]
    stopped: str  # "rounds", "validation stopped improving" or "not improved" (the fit kept its start: no candidate)
    policies: list[str] = field(default_factory=list)  # folders, round 1..
    plot: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": [asdict(r) for r in self.rounds], "stopped": self.stopped, "policies": self.policies,
                "plot": self.plot, "config": self.config}

    @property
    def best(self) -> RoundResult:
        """The last promoted round: the policy evolve hands back."""
        return [r for r in self.rounds if r.promoted][-1]


def check_splits(train: Sequence[Any], test: Sequence[Any], what: str = "test") -> None:
    """Training on a test task would make every test number meaningless: refuse it."""
    shared = sorted({t.id for t in train} & {t.id for t in test})
    if shared:
        raise ConfigError(f"the training split shares {len(shared)} task(s) with the {what} split (e.g. {shared[0]}); use disjoint splits")
    if not train or not test:
        raise ConfigError(f"evolve needs at least one training task and one {what} task")


def split_validation(train: Sequence[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(training tasks, validation tasks): a seeded share of the training split, at least one of each."""
    if not 0 < fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {fraction}")
    if len(train) < 2:
        raise ConfigError("evolve holds out validation tasks from the training split: give at least 2 training tasks")
    order = sorted(train, key=lambda t: t.id)
    random.Random(seed).shuffle(order)
    n = min(len(order) - 1, max(1, round(len(order) * fraction)))
    held = {t.id for t in order[:n]}
    return [t for t in train if t.id not in held], [t for t in train if t.id in held]


def _tag(version: dict[str, Any]) -> str:
    return f"policy:{version['name']}@{str(version.get('hash') or 'none')[:12]}"


def stamp(store: Store, search_ids: Sequence[str | None], *, round: int, version: dict[str, Any], split: str,
          value_model: dict[str, Any] | None = None) -> None:
    """Tag each search run and its rollouts with the round, split, policy (and value model) version; metadata says the same."""
    tags = ("evolve", f"round:{round}", f"split:{split}", _tag(version))
    updates = []
    for sid in [s for s in search_ids if s]:
        for run in [store.run(sid), *store.runs(parent_id=sid)]:
            meta = {**run.metadata, "policy": version, "round": round, "split": split}
            if value_model is not None:
                meta["value_model"] = {k: value_model.get(k) for k in ("name", "hash")}
            updates.append((run.id, {"tags": tuple(dict.fromkeys([*run.tags, *tags])), "metadata": meta}))
    if updates:
        store.write(run_updates=updates)


def _view(policy: Any) -> Callable[[Any], Any]:
    return (lambda task: policy.view()) if hasattr(policy, "view") else (lambda task: policy)


async def _bench(tasks: Sequence[Any], optimizers: Sequence[str], policy: Any, *, reward: Any, budget: int, store: Store | None,
                 tags: Sequence[str], workers: int, name: str, tick: Callable[[], None]) -> list[Any]:
    from trajgraph import bench

    return await bench.run_bench(tasks, optimizers, policy_for=_view(policy), reward=reward, budget=budget, store=store,
                                 concurrency=workers, tags=tags, graph_name=name, repeatable=True, on_result=lambda r: tick())


def _rate(results: Sequence[Any], optimizer: str) -> tuple[float, float]:
    rs = [r for r in results if r.optimizer == optimizer]
    if not rs:
        return 0.0, 0.0
    return sum(r.success for r in rs) / len(rs), sum(r.outcome or 0.0 for r in rs) / len(rs)


def folder_hash(folder: str | Path) -> str:
    """sha256 over a model folder's files (names and bytes): a value model's version."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _validation_key(row: RoundResult) -> tuple[float, float]:
    return (row.val_greedy + row.val_search, row.val_greedy_score + row.val_search_score)


def beats(candidate: RoundResult, incumbent: RoundResult) -> bool:
    """Promotion: the candidate beats the incumbent on validation (greedy + search success, then
    mean scores); a tie keeps the incumbent. Test numbers play no part."""
    return _validation_key(candidate) > _validation_key(incumbent)


def evolve(
    train: Sequence[Any],
    test: Sequence[Any],
    *,
    store: Store | str | Path,
    out: str | Path,
    policy: Any = None,
    rounds: int = 2,
    optimizer: str = "best-of-n",
    budget: int = 100,
    reward: Any = None,
    retrain_reward: bool = False,
    name: str = "evolve",
    seed: int = 0,
    workers: int = 2,
    train_options: dict[str, Any] | None = None,
    on_round: Callable[[RoundResult], None] | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
    val: Sequence[Any] | None = None,
    val_fraction: float = 0.25,
    mix: str = "all",
    temperatures: Sequence[float] = TEMPERATURES,
    reward_options: dict[str, Any] | None = None,
) -> EvolveReport:
    """Up to `rounds` rounds of search on `train`, training, and promotion on validation; evaluation on `test`.

    train / test: task lists (a suite's `tasks("train", n)` / `tasks("test", n)`), disjoint.
    val: validation tasks (default: `val_fraction` of `train`, held out from its searches).
    policy: the starting policy (a folder, an object with `propose`); None: an untrained
    MiniLM head, which ranks like the demo's MiniLM policy. Its greedy rows run at the
    temperature among `temperatures` that scores best on the training split (the fair
    baseline); trained heads' greedy rows run at argmax. optimizer: the search on every
    split. reward: the value model for the search; with `retrain_reward` a new one is
    fitted each round (`reward_options`: `trajgraph.reward.train` settings) and used by
    the next round's search. mix: "all" rounds' training data or the "recent" round's.
    on_round: called with each row. progress(label, total) -> tick: hook for progress bars.
    """
    from trajgraph import bench

    if mix not in MIXES:
        raise ConfigError(f"mix must be one of {', '.join(MIXES)}, got {mix!r}")
    check_splits(train, test)
    train_set, val_set = (list(train), list(val)) if val is not None else split_validation(train, val_fraction, seed)
    check_splits(train_set, val_set, "validation")
    check_splits(val_set, test)
    if rounds < 0:
        raise ConfigError(f"rounds must be >= 0, got {rounds}")
    bench.parse_optimizers([optimizer])
    store = Store(store) if isinstance(store, (str, Path)) else store
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"train_tasks": [t.id for t in train_set], "val_tasks": [t.id for t in val_set], "test_tasks": [t.id for t in test],
              "optimizer": optimizer, "budget": budget, "rounds": rounds, "seed": seed, "retrain_reward": retrain_reward, "mix": mix,
              "start": str(policy) if isinstance(policy, (str, Path)) else (None if policy is None else policy_version(policy)),
              "reward": str(getattr(reward, "path", "")) or (None if reward is None else type(reward).__name__)}
    state = _load_state(out, config)
    tick_of = progress or (lambda label, total: (lambda: None))
    rows = [RoundResult(**r) for r in state["rows"]]

    def value_of(info: dict[str, Any] | None) -> Any:
        if info is None or not info.get("path"):
            return reward
        from trajgraph import reward as rw

        return rw.LocalRewardModel(info["path"])

    def policy_of(folder: str | None, temperature: float | None = None) -> Any:
        if folder is None:
            if policy is None:
                return trainable_policy(seed=seed, temperature=1.0 if temperature is None else _base_scale(temperature))
            return as_node_policy(policy) if temperature is None else _at(as_node_policy(policy), temperature, seed)
        return load_trainable_policy(folder, temperature=temperature, seed=seed)

    if state.get("decoding") is None:  # the fair baseline: the starting policy's best decoding, chosen on training tasks
        decoding = best_decoding(train_set, lambda t: policy_of(None, t), temperatures=temperatures, budget=budget,
                                 workers=workers, graph_name=name)
        state["decoding"] = decoding.to_dict()
        _save_state(out, state)
    start_value = None if reward is None else {"name": type(reward).__name__, "hash": folder_hash(reward.path) if hasattr(reward, "path") else None,
                                               "path": str(getattr(reward, "path", "")) or None}
    r = len(rows)
    while not state.get("stopped") and r <= rounds:
        t0 = time.perf_counter()
        candidate = state.get("candidate")  # {"policy": folder, "value": {...}} trained last round, or None at round 0
        folder = candidate["policy"] if candidate else state.get("incumbent")
        value_info = candidate.get("value") if candidate else state.get("incumbent_value", start_value)
        greedy_t = state["decoding"]["temperature"] if folder is None else 0.0
        partial = state.get("partial")
        if partial and partial.get("round") == r:  # resumed after a kill: this round's evaluation is done
            row = RoundResult(**partial)
        else:
            greedy_policy, search_policy = policy_of(folder, greedy_t), policy_of(folder)
            version = policy_version(search_policy)
            value = value_of(value_info)
            evals: dict[str, tuple[float, float, float, float]] = {}
            for split, tasks in (("val", val_set), ("test", test)):
                tick = tick_of(f"round {r}: {version['name']} on {len(tasks)} {split} tasks", 2 * len(tasks))
                got = asyncio.run(_bench(tasks, ["greedy"], greedy_policy, reward=value, budget=budget, store=store,
                                         tags=("evolve", split), workers=workers, name=name, tick=tick))
                got += asyncio.run(_bench(tasks, [optimizer], search_policy, reward=value, budget=budget, store=store,
                                          tags=("evolve", split), workers=workers, name=name, tick=tick))
                stamp(store, [x.run_id for x in got], round=r, version=version, split=split, value_model=value_info)
                evals[split] = (*_rate(got, "greedy"), *_rate(got, optimizer))
            row = RoundResult(round=r, policy=version["name"], policy_hash=version.get("hash"), train_search_success=None, decisions=None,
                              preferences=None, test_greedy=evals["test"][0], test_greedy_score=evals["test"][1],
                              test_search=evals["test"][2], test_search_score=evals["test"][3], wall_s=0.0,
                              val_greedy=evals["val"][0], val_greedy_score=evals["val"][1], val_search=evals["val"][2],
                              val_search_score=evals["val"][3], greedy_temperature=greedy_t,
                              value_model=None if value_info is None else {k: value_info.get(k) for k in ("name", "hash", "val_auc")})
            state["partial"] = asdict(row)
            _save_state(out, state)
        incumbent_rows = [x for x in rows if x.promoted]
        if incumbent_rows and not beats(row, incumbent_rows[-1]):
            row.promoted = False  # refused: the incumbent stays, and the loop stops (never decided on test)
            stop = "validation stopped improving"
        else:
            stop = None
            if candidate:
                state["incumbent"], state["incumbent_value"] = candidate["policy"], candidate.get("value")
        if stop is None and r < rounds:
            current_folder = state.get("incumbent")
            current, current_value = policy_of(current_folder), value_of(state.get("incumbent_value", start_value))
            cur_version = policy_version(current)
            if state.get("searched") != r:  # not yet searched this round (a resumed round keeps its search)
                tick = tick_of(f"round {r}: search {len(train_set)} training tasks", len(train_set))
                found = asyncio.run(_bench(train_set, [optimizer], current, reward=current_value, budget=budget, store=store,
                                           tags=("evolve", "train"), workers=workers, name=name, tick=tick))
                stamp(store, [x.run_id for x in found], round=r, version=cur_version, split="train",
                      value_model=state.get("incumbent_value", start_value))
                row.train_search_success = _rate(found, optimizer)[0]
                state["searched"], state["partial"] = r, asdict(row)
                _save_state(out, state)
            nxt = out / f"policy-r{r + 1}"
            tags = ("split:train",) if mix == "all" else ("split:train", f"round:{r}")
            trained = train_policy(store, nxt, tags=tags, tasks=[t.id for t in train_set], round=r + 1, seed=seed,
                                   name=f"{name}-r{r + 1}", base=None, **(train_options or {}))
            data = trained.card.get("data", {})
            row.decisions, row.preferences, row.targets = data.get("decisions"), data.get("preferences"), data.get("targets")
        if stop is None and r < rounds and not trained.improved:
            stop = "not improved"  # the fit kept its start or did not improve: nothing to promote (issue 22.3)
            state["candidate"] = None
        elif stop is None and r < rounds:
            new_value = state.get("incumbent_value", start_value)
            if retrain_reward:
                new_value = _retrain_reward(store, out / f"value-r{r + 1}", seed, tags, reward_options or {})
                row.next_value_model = {k: new_value.get(k) for k in ("name", "hash", "val_auc", "val_pair_accuracy")}
            state["candidate"] = {"policy": str(nxt), "value": new_value}
            state.setdefault("policies", []).append(str(nxt))
        else:
            state["candidate"] = None
        row.wall_s += time.perf_counter() - t0
        rows.append(row)
        state["rows"] = [asdict(x) for x in rows]
        state["stopped"], state["partial"] = stop, None
        _save_state(out, state)
        if on_round is not None:
            on_round(row)
        r += 1
    stopped = state.get("stopped") or "rounds"
    report = EvolveReport(rounds=rows, stopped=stopped, policies=list(state.get("policies", [])),
                          config={**config, "decoding": state["decoding"], "incumbent": state.get("incumbent")})
    report.plot = plot_rounds(rows, str(out / "evolve.png"), f"{name}: success by round ({optimizer}, {budget} calls)")
    (out / "evolve.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


def _base_scale(temperature: float) -> float:
    """An untrained head at head-temperature t samples like the MiniLM base at t * 0.1; the
    baseline's temperatures are the base policy's, so scale them to the head's."""
    from trajgraph.policies.head import BASE_TEMPERATURE

    return temperature / BASE_TEMPERATURE


def _at(policy: Any, temperature: float, seed: int) -> Any:
    """A starting head at another temperature (its own scale); a policy that cannot be re-tempered plays as it is."""
    if isinstance(policy, TrainablePolicy):
        return TrainablePolicy(policy.head, policy.card, temperature, seed, policy.encoder)
    return policy


def _load_state(out: Path, config: dict[str, Any]) -> dict[str, Any]:
    path = out / STATE
    if path.is_file():
        try:
            state = json.loads(path.read_text())
        except ValueError:
            state = None
        if isinstance(state, dict) and state.get("config") == json.loads(json.dumps(config, default=str)):
            return state
    return {"config": json.loads(json.dumps(config, default=str)), "rows": [], "decoding": None, "incumbent": None,
            "candidate": None, "stopped": None}


def _save_state(out: Path, state: dict[str, Any]) -> None:
    tmp = out / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(out / STATE)


def _retrain_reward(store: Store, folder: Path, seed: int, tags: Sequence[str], options: dict[str, Any]) -> dict[str, Any]:
    """Fit the next value model on the training split's runs so far (those tagged `tags`, with their
    rollouts; never the validation or test searches it will be measured on); its name, hash and
    validation metrics."""
    from trajgraph import reward as rw

    report = rw.train(store, folder, **{"labels": "auto", "seed": seed, "epochs": 1, "progress": False, "tags": tuple(tags), **options})
    best = report.best
    return {"name": folder.name, "hash": folder_hash(folder), "path": str(folder),
            "val_auc": None if best is None else best.val_auc, "val_pair_accuracy": None if best is None else best.val_pair_accuracy}


def plot_rounds(rows: Sequence[RoundResult], path: str, title: str) -> str | None:
    """The learning curve: greedy and search success per round, on test and validation, as a PNG; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    xs = [r.round for r in rows]
    ax.plot(xs, [r.test_greedy for r in rows], marker="o", label="test greedy (no search)")
    ax.plot(xs, [r.test_search for r in rows], marker="s", label="test search")
    ax.plot(xs, [r.val_greedy for r in rows], marker="o", linestyle="--", label="validation greedy")
    ax.plot(xs, [r.val_search for r in rows], marker="s", linestyle="--", label="validation search")
    for r in rows:
        if not r.promoted:
            ax.annotate("refused", (r.round, r.val_search), fontsize=7)
    ax.set_xlabel("round (policy trained on rounds < r)")
    ax.set_ylabel("success rate")
    ax.set_xticks(xs)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["evolve", "beats", "EvolveReport", "RoundResult", "check_splits", "split_validation", "stamp", "plot_rounds", "folder_hash", "MIXES"]
