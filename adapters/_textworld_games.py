"""TextWorld games generated offline by seed and cached on disk: the files a TextWorld task plays.

Kept apart from textworld_env.py (the environment, its forking, the graph and the
tasks) because generation is a build step with its own rules: the same seed and
settings must give the same game, byte for byte, generation must be safe against
other threads and processes writing the same cache, and it runs only once per
game. `make_game` is the entry point; `game_id` names a game for task ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError

CACHE_ENV = "TRAJGRAPH_TEXTWORLD_CACHE"
CHALLENGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tw-simple": {"rewards": "dense", "goal": "detailed", "test": False},
    "tw-cooking": {"recipe": 1, "take": 1, "go": 6, "open": True, "cook": False, "cut": False, "drop": False,
                   "recipe_seed": 0, "split": None},
    "tw-coin_collector": {"level": 1},
    "tw-treasure_hunter": {"level": 1},
    "custom": {"world_size": 5, "nb_objects": 10, "quest_length": 5},
}
_GENERATE = threading.Lock()  # the generator seeds a module-global RNG
_KNOWLEDGE: dict[str, Any] = {}  # KnowledgeBase.load's answers in this process, by its arguments (see _knowledge_loaded_once)


def load_textworld() -> Any:
    """The textworld package, or a ConfigError that says how to install it."""
    try:
        import textworld
        import textworld.challenges
    except ImportError as e:
        raise ConfigError("TextWorld is not installed: pip install 'trajgraph[textworld]'") from e
    return textworld


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    d = Path(path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "trajgraph" / "textworld")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _settings(challenge: str, settings: dict[str, Any] | None) -> dict[str, Any]:
    if challenge not in CHALLENGE_DEFAULTS:
        raise ConfigError(f"unknown TextWorld challenge {challenge!r}: use one of {', '.join(CHALLENGE_DEFAULTS)}")
    unknown = set(settings or {}) - set(CHALLENGE_DEFAULTS[challenge])
    if unknown:
        raise ConfigError(f"{challenge}: unknown settings {sorted(unknown)}; known: {sorted(CHALLENGE_DEFAULTS[challenge])}")
    return {**CHALLENGE_DEFAULTS[challenge], **(settings or {})}


def game_id(seed: int, challenge: str = "tw-simple", settings: dict[str, Any] | None = None) -> str:
    """'tw-simple-s12', 'tw-simple-test-s12', 'custom-quest_length3-s5': the non-default settings, then the seed."""
    full, defaults = _settings(challenge, settings), CHALLENGE_DEFAULTS[challenge]
    parts = [challenge]
    for k in sorted(full):
        if full[k] != defaults[k]:
            parts.append(k if full[k] is True else f"{k}{full[k]}")
    return "-".join(parts + [f"s{seed}"])


def make_game(seed: int, challenge: str = "tw-simple", settings: dict[str, Any] | None = None,
              cache: str | os.PathLike | None = None) -> Path:
    """Path of the compiled game (.z8, with its .json beside it), generated once and cached."""
    path = _game_path(seed, challenge, settings, cache)
    if _cached(path):
        return path
    d = path.parent
    full = _settings(challenge, settings)
    tw = load_textworld()
    with _GENERATE, _knowledge_loaded_once():
        tmp = Path(tempfile.mkdtemp(dir=d, prefix=".gen-"))
        try:
            options = tw.GameOptions()
            options.seeds = seed
            options.path = str(tmp / path.name)
            options.file_ext = ".z8"
            options.force_recompile = True
            try:
                if challenge == "custom":
                    options.nb_rooms, options.nb_objects = full["world_size"], full["nb_objects"]
                    n = full["quest_length"]
                    options.chaining.min_length = options.chaining.max_length = options.chaining.max_depth = n
                    tw.make(options)
                else:
                    game = tw.challenges.CHALLENGES[challenge][1](settings=full, options=options)
                    tw.generator.compile_game(game, options)
            except tw.generator.QuestGenerationError as e:
                raise ConfigError(f"{challenge} seed {seed}: TextWorld found no quest for {full}; relax the settings") from e
            # the .z8 appears last: a reader that sees it also finds the .json (other processes may race us)
            os.replace(tmp / path.with_suffix(".json").name, path.with_suffix(".json"))
            os.replace(tmp / path.name, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


@contextlib.contextmanager
def _knowledge_loaded_once() -> Any:
    """Every challenge's `make` calls `KnowledgeBase.load`, which parses TextWorld's logic files
    with a grammar: 0.65 of the 0.85 CPU-seconds a game's Python part costs. The files are the
    same for every game, so while a game is made here (under `_GENERATE`) the class answers
    each call with the knowledge base loaded for the same arguments before in this process.
    Games come out byte for byte as without it (tests/test_textworld_games.py); the class is
    restored afterwards, so nothing outside game generation sees the change."""
    from textworld.generator.data import KnowledgeBase

    original = KnowledgeBase.__dict__["load"]
    load = original.__func__

    def load_once(cls: Any, *args: Any, **kwargs: Any) -> Any:
        key = json.dumps([args, kwargs], sort_keys=True, default=str)
        if key not in _KNOWLEDGE:
            _KNOWLEDGE[key] = load(cls, *args, **kwargs)
        return _KNOWLEDGE[key]

    KnowledgeBase.load = classmethod(load_once)
    try:
        yield
    finally:
        KnowledgeBase.load = original


@dataclass
class GameJobs:
    """Games being generated in worker processes (`start_games`); `wait()` gives their paths."""

    seeds: list[int]
    challenge: str
    settings: dict[str, Any] | None
    cache: str | os.PathLike | None
    missing: int  # games that were not cached when the jobs started
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def wait(self) -> list[Path]:
        """Every game's path, once made. A game the workers left missing (an error) is made here,
        so the error is raised as `make_game` raises it."""
        for process in self.processes:
            process.wait()
        return [make_game(s, self.challenge, self.settings, self.cache) for s in self.seeds]


def start_games(seeds: Sequence[int], challenge: str = "tw-simple", settings: dict[str, Any] | None = None,
                cache: str | os.PathLike | None = None, workers: int | None = None, nice: int = 0) -> GameJobs:
    """Start generating the games not cached yet in up to `workers` processes (default: one per core)
    and return at once. Generation is CPU-bound Python with a module-global RNG, so threads could not
    share it; each process writes through `make_game`'s rename, so they never clash. `nice` > 0 lets
    them take only what the caller's work leaves of the cores (games made in the background).

    The processes are fresh interpreters running this module (not multiprocessing: its spawn would
    re-run the caller's script)."""
    seeds = list(seeds)
    missing = [s for s in dict.fromkeys(seeds) if not game_cached(s, challenge, settings, cache)]
    jobs = GameJobs(seeds, challenge, settings, cache, len(missing))
    workers = min(workers or os.cpu_count() or 1, len(missing))
    if workers > 1 or (workers == 1 and nice > 0):
        folder = str(cache_dir(cache))
        jobs.processes = [subprocess.Popen([sys.executable, "-m", __name__, json.dumps(
            {"seeds": missing[i::workers], "challenge": challenge, "settings": settings, "cache": folder, "nice": nice})],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(workers)]
    return jobs


def _game_path(seed: int, challenge: str, settings: dict[str, Any] | None, cache: str | os.PathLike | None) -> Path:
    full = _settings(challenge, settings)
    digest = hashlib.sha1(json.dumps(full, sort_keys=True).encode()).hexdigest()[:8]
    return cache_dir(cache) / f"{game_id(seed, challenge, settings)}-{digest}.z8"


def _cached(path: Path) -> bool:
    return path.exists() and path.with_suffix(".json").exists()


def game_cached(seed: int, challenge: str = "tw-simple", settings: dict[str, Any] | None = None,
                cache: str | os.PathLike | None = None) -> bool:
    """Whether `make_game` would only read this game from the cache."""
    return _cached(_game_path(seed, challenge, settings, cache))


__all__ = ["CACHE_ENV", "CHALLENGE_DEFAULTS", "cache_dir", "game_id", "game_cached", "make_game", "start_games", "GameJobs", "load_textworld"]


if __name__ == "__main__":  # one of start_games' worker processes: {"seeds", "challenge", "settings", "cache"}
    _job = json.loads(sys.argv[1])
    if _job.get("nice"):
        os.nice(int(_job["nice"]))
    for _seed in _job["seeds"]:
        make_game(int(_seed), _job["challenge"], _job["settings"], _job["cache"])
