"""The demo's learning rounds: train the MiniLM head on the training split's search data
(the search's soft targets at every expanded node), then measure it greedily and with one
search on the test split, beside the fair baseline (the base policy at its best decoding,
chosen on training games).

`trajgraph demo` calls `learning_round` after its optimizer table. The rows it
adds join the same table and plot; the greedy curve by round goes to `learning.png`.
Everything runs with seeded policies and `repeatable=True`, so the numbers repeat
run after run.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.learn.baseline import Decoding
from trajgraph.learn.evolve import check_splits, stamp
from trajgraph.learn.graph import policy_version
from trajgraph.learn.train import NotImprovedWarning, train_policy
from trajgraph.store import Store

TRAINED = "· trained"


@dataclass(frozen=True)
class Round:
    """One explore -> train round of the demo's learning (`LearningSettings.rounds`)."""

    explore: tuple[str, ...] = ()  # searches of the training games first (empty: learn from the store's training runs)
    games: int = 0  # the last N training games (0: all `train_games`; the reward model's exploration played the first)
    # the last round's head in those searches, at this temperature (None: `LearningSettings.temperature`); round 1
    # explores with the base policy instead (`LearningSettings.explore_at_decoding`)
    explore_temperature: float | None = None
    from_last: bool = False  # the head continues from the last round's (False: a fresh head on everything so far)
    options: tuple[tuple[str, Any], ...] = (("use_detours", False), ("min_steps", 100))  # more `train_policy` options


# The demo's rounds (benchmarks/README.md, "ninth session: the demo's learning round"): round 1 searches
# nothing new and learns from the reward model's exploration of the training games, already in the store;
# round 2 is DAgger / ExIt: the apprentice search with the round-1 head at argmax on every training game,
# the round-2 head continuing from the round-1 head on every training task (no held-out epoch choice: with
# 4 held-out tasks the fit kept the round-1 weights; chosen on validation, 12/20 either way, mean score
# 0.92 against 0.885).
DEMO_ROUNDS = (
    Round(),
    Round(explore=("apprentice",), explore_temperature=0.0, from_last=True,
          options=(("use_detours", False), ("min_steps", 100), ("val_fraction", 0.0))),
)


@dataclass(frozen=True)
class LearningSettings:
    """How much the rounds explore and train (the demo's defaults fit its time budget on 2 cores).

    The defaults were chosen on 20 training games held out as validation, never on the test games:
    the `DEMO_ROUNDS` with the "progress" features, then the apprentice search with the last head."""

    train_games: int = 24  # training-split games of the rounds' searches (the reward model's games are among them)
    rounds: tuple[Round, ...] = DEMO_ROUNDS  # explore -> train, in order; round r explores with head r-1 (round 1: the base)
    explore_at_decoding: bool = False  # round 1 explores with the base at its best decoding, not the bench's own sampling policy
    search: str = "apprentice"  # the search measured on top of the last round's trained policy
    search_temperature: float | None = 0.0  # the trained head's temperature in `search` (None: `temperature`)
    epochs: int = 30
    features: str = "progress"
    temperature: float = 0.3  # the trained head's sampling temperature (see trainable.TRAINED_TEMPERATURE)
    situation: str = "commands"  # TextWorld: the admissible commands are the state (see trajgraph.learn.data.run_decisions)
    decoding_games: int = 8  # training games the base policy's best decoding is chosen on (0: argmax, not chosen)
    temperatures: tuple[float, ...] = (0.0, 0.1, 0.3)

    def __post_init__(self) -> None:
        if not isinstance(self.rounds, tuple) or not self.rounds or not all(isinstance(r, Round) for r in self.rounds):
            raise ConfigError(f"LearningSettings.rounds must be one or more Round(...), got {self.rounds!r}")


@dataclass
class LearningRound:
    names: list[str]
    results: list[Any]
    policy: str
    card: dict[str, Any] = field(default_factory=dict)
    decoding: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)  # per round: greedy success on test, data counts
    plot: str | None = None


@dataclass(frozen=True)
class Player:
    """A learning round's policy by name, so that another process loads the same one: the base
    MiniLM policy (`folder` None) or a trained head's folder, at a temperature, seeded."""

    temperature: float
    seed: int | None
    folder: str | None = None

    def load(self) -> Any:
        from trajgraph.policies import minilm_policy
        from trajgraph.policies.head import load_trainable_policy

        if self.folder is None:
            return minilm_policy(temperature=self.temperature, seed=self.seed)
        return load_trainable_policy(self.folder, temperature=self.temperature, seed=self.seed)


@dataclass(frozen=True)
class Batch:
    """One batch of a learning round's searches: `policy_for` runs them here; `player` names the same
    policy for another process (None: the bench's own base policy, `base_for`)."""

    tasks: Sequence[Any]
    split: str  # which split of the suite `tasks` are (another process loads them from there)
    optimizers: tuple[str, ...]
    player: Player | None
    policy_for: Callable[[Any], Any]
    scored: bool  # with the round's reward model (evaluations) or without (explorations)
    tags: tuple[str, ...]


def learning_round(suite: Any, test: Sequence[Any], *, base_for: Callable[[Any], Any], reward: Any, budget: int, store: Store,
                   out: Path, seed: int, workers: int, graph_name: str, settings: LearningSettings | None = None,
                   progress: Callable[[str, int], Callable[[Any], None]] | None = None,
                   elsewhere: Callable[[Batch, Callable[[Any], None]], list[Any]] | None = None) -> LearningRound:
    """Rounds of: explore the training split (round 1 with the base policy, then with the last
    trained one), train a head on every training-split run so far (the search's soft targets at
    every expanded node, plus cloning and pairs), and play it greedily (argmax) on `test`. Then
    `settings.search` with the last policy, and the fair baseline: the base policy at its best
    decoding, chosen on training games (never on test).

    `elsewhere(batch, on_result)`, when given, runs every batch of searches (explorations and
    evaluations) in this function's stead: `trajgraph demo` splits each over two processes, the
    second loading the same policy from the batch's `Player`.
    """
    from trajgraph import bench
    from trajgraph.learn.baseline import best_decoding
    from trajgraph.policies import minilm_policy

    s = settings or LearningSettings()
    tick = progress or (lambda label, total: (lambda result: None))
    train = suite.tasks("train", s.train_games, seed)
    check_splits(train, test)
    if s.decoding_games > 0:
        decoding = best_decoding(train[: s.decoding_games], lambda t: minilm_policy(temperature=t, seed=seed), temperatures=s.temperatures,
                                 budget=budget, workers=workers, graph_name=graph_name)
    else:
        decoding = Decoding(temperature=0.0, tasks=0)

    def play(batch: Batch, on_result: Callable[[Any], None]) -> list[Any]:
        if elsewhere is not None:
            return elsewhere(batch, on_result)
        return asyncio.run(bench.run_bench(batch.tasks, list(batch.optimizers), policy_for=batch.policy_for,
                                           reward=reward if batch.scored else None, budget=budget, store=store, concurrency=workers,
                                           tags=batch.tags, graph_name=graph_name, repeatable=True, on_result=on_result))

    def evaluate(label: str, optimizer: str, pol: Any, player: Player, round_: int) -> list[Any]:
        done = play(Batch(test, "test", (optimizer,), player, _viewer(pol), True, ("test", "learn")),
                    tick(f"learning: {label} on {len(test)} test games", len(test)))
        stamp(store, [r.run_id for r in done], round=round_, version=policy_version(pol), split="test")
        for r in done:
            r.optimizer = label
        return done

    base_label = f"greedy · base best decoding ({decoding.label()}, chosen on train)"
    base_player = Player(temperature=decoding.temperature, seed=seed)
    results = evaluate(base_label, "greedy", base_player.load(), base_player, 0)
    names = [base_label]
    curve = [{"round": 0, "test_greedy": _rate(results), "policy": "minilm"}]
    explorer: Callable[[Any], Any] = base_for
    explorer_player: Player | None = None  # None: the bench's own policy (base_for)
    if s.explore_at_decoding:
        explorer, explorer_player = _viewer(base_player.load()), base_player
    policy: Any = None
    trained: Any = None
    folder: Path | None = None
    train_ids = sorted({t.id for t in train} - {t.id for t in test})
    for r, spec in enumerate(s.rounds, 1):
        games = train[-spec.games:] if spec.games else train
        if spec.explore:
            if r > 1 and folder is not None:  # a later round explores with the last round's head
                t = s.temperature if spec.explore_temperature is None else spec.explore_temperature
                explorer_player = Player(t, seed, str(folder))
                policy = explorer_player.load()
                explorer = _viewer(policy)
            on_explored = tick(f"round {r}: explore {len(games)} training games", len(games) * len(spec.explore))
            explored = play(Batch(games, "train", spec.explore, explorer_player, explorer, False, ("train", "learn")), on_explored)
            stamp(store, [x.run_id for x in explored], round=r - 1, version=policy_version(policy) if policy is not None else
                  {"name": "minilm", "hash": None, "round": 0}, split="train")
        last, folder = folder, out / f"policy-r{r}"
        recorded = {x.task for x in store.runs(tag="train") if x.task} - {t.id for t in test}
        ids = sorted(set(train_ids) | recorded)
        if r == 1 and not spec.explore and not recorded:
            raise ConfigError("the learning round's first round searches nothing (Round.explore is empty) and the store "
                              "has no training-split runs (tag 'train'); search the training split first or set explore")
        start = str(last) if spec.from_last and last is not None else None
        with warnings.catch_warnings():  # a later head that does not improve keeps the last one's weights: the curve says so
            if start is not None:
                warnings.simplefilter("ignore", NotImprovedWarning)
            trained = train_policy(store, folder, base=start, tasks=ids, round=r, seed=seed, name=f"minilm-head-r{r}",
                                   epochs=s.epochs, features=s.features, temperature=s.temperature, situation=s.situation,
                                   **dict(spec.options))
        argmax_player = Player(0.0, seed, str(folder))
        argmax = argmax_player.load()
        label = f"greedy {TRAINED} r{r} argmax" if len(s.rounds) > 1 else f"greedy {TRAINED} argmax"
        done = evaluate(label, "greedy", argmax, argmax_player, r)
        results += done
        names.append(label)
        data = trained.card.get("data", {})
        curve.append({"round": r, "test_greedy": _rate(done), "policy": argmax.name, "targets": data.get("targets"),
                      "decisions": data.get("decisions"), "improved": trained.improved})
    if folder is not None:
        t = s.temperature if s.search_temperature is None else s.search_temperature
        player = Player(t, seed, str(folder))
        policy = player.load()
        label = f"{s.search} {TRAINED} ({'argmax' if t == 0 else f'T={t:g}'})"
        results += evaluate(label, s.search, policy, player, len(s.rounds))
        names.append(label)
    plot = _plot_curve(curve, str(out / "learning.png"), f"greedy (argmax) on {len(test)} test games by round")
    return LearningRound(names=names, results=results, policy=policy.name if policy is not None else "minilm",
                         card=trained.card if trained is not None else {}, decoding=decoding.to_dict(), curve=curve, plot=plot)


def _viewer(policy: Any) -> Callable[[Any], Any]:
    def view(task: Any) -> Any:
        return policy.view()

    return view


def _rate(results: Sequence[Any]) -> float:
    return sum(r.success for r in results) / len(results) if results else 0.0


def _plot_curve(curve: Sequence[dict[str, Any]], path: str, title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot([c["round"] for c in curve], [c["test_greedy"] for c in curve], marker="o", label="greedy, argmax (no search)")
    ax.set_xlabel("round (0: base policy at its best decoding)")
    ax.set_ylabel("test success rate")
    ax.set_xticks([c["round"] for c in curve])
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def demo_rows(names: list[str], results: list[Any], suite: Any, test: Sequence[Any], *, progress: Callable[[], Any],
              **kwargs: Any) -> tuple[list[str], list[Any]]:
    """The demo's optimizer names and results with the learning round's rows appended.

    progress: a factory of rich `Progress` bars (the demo's own). kwargs: see `learning_round`."""
    with progress() as prog:
        def bar(label: str, total: int) -> Callable[[Any], None]:
            job = prog.add_task(label, total=total)
            return lambda result: prog.advance(job)

        extra = learning_round(suite, test, progress=bar, **kwargs)
    # the bench's own greedy row samples at the base policy's temperature: say so, beside the fair row
    for r in results:
        if r.optimizer == "greedy":
            r.optimizer = "greedy · base sampled (T=0.1)"
    names = ["greedy · base sampled (T=0.1)" if n == "greedy" else n for n in names]
    return names + extra.names, results + extra.results


__all__ = ["learning_round", "demo_rows", "LearningRound", "LearningSettings", "Player", "Batch", "TRAINED"]
