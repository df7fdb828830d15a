"""TextWorld adapter: generated games, the env-loop graph, and engine snapshot/restore forks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from trajgraph.adapters.textworld_env import TextWorldEnv, TextWorldSuite, game_id, make_game, textworld_task
from trajgraph.envloop import oracle_policy
from trajgraph.envloop.task import TaskSpec
from trajgraph.errors import ConfigError, ForkError

SEED = 12
# TextWorld's games are "fully supported" by Jericho but have no action generator; textworld silences
# the resulting warnings at import, pytest turns them back on.
pytestmark = pytest.mark.filterwarnings("ignore::jericho.UnsupportedGameWarning")


@pytest.fixture(scope="session")
def tw_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("textworld")


@pytest.fixture(scope="session")
def tw_task(tw_cache) -> TaskSpec:
    return textworld_task(SEED, cache=tw_cache)


@pytest.fixture(scope="session")
def walkthrough(tw_task) -> list[str]:
    """Read from the game's own .json (TextWorld's metadata), not from the adapter."""
    data = json.loads(open(tw_task.make_graph.gamefile.replace(".z8", ".json")).read())
    return list(data["metadata"]["walkthrough"])


def play(task: TaskSpec, policy, **config):
    graph, env = task.make_graph(policy)
    return graph.invoke(task.input, {"recursion_limit": 4 * task.max_steps + 10, **config}), env


def test_walkthrough_through_the_graph_wins(tw_task, walkthrough):
    moves = iter(walkthrough)
    out, env = play(tw_task, lambda state: {"action": next(moves)})
    assert [h["action"] for h in out["history"]] == walkthrough
    assert out["done"] and out["won"] and tw_task.outcome(out) == 1.0 == tw_task.optimum
    assert out["score"] == out["max_score"] > 0
    assert sum(h["reward"] for h in out["history"]) == out["max_score"]  # dense: points along the way
    assert tw_task.id == f"tw-simple-s{SEED}" and tw_task.decision_node == "policy"
    assert tw_task.input["task"] and "TextWorld" not in tw_task.input["observation"][:40]  # banner stripped
    assert tw_task.input["actions"] == sorted(tw_task.input["actions"]) and walkthrough[0] in tw_task.input["actions"]


def test_invoking_twice_restarts_the_game(tw_task, walkthrough):
    graph, env = tw_task.make_graph(lambda state: {"action": walkthrough[len(state["history"])]})
    first = graph.invoke(tw_task.input, {"recursion_limit": 200})
    second = graph.invoke(tw_task.input, {"recursion_limit": 200})
    assert first["won"] and second["won"] and first["history"] == second["history"]


def frame_view(env: TextWorldEnv) -> tuple:
    f = env.frame
    assert f is not None
    return f.observation, f.score, f.admissible_commands, f.policy_commands, f.won


def test_fork_restores_exact_state_and_score(tw_task, walkthrough):
    env = TextWorldEnv(tw_task.make_graph.gamefile)
    env.reset()
    for c in walkthrough[:5]:
        env.step(c)
    snap, here = env.snapshot(), frame_view(env)
    assert here[1] == 5
    # diverge: score-changing moves, a reversal, and a move the tracker cannot undo
    for c in walkthrough[5:8] + ["go west", "close wooden door", "examine chest drawer"]:
        env.step(c)
    assert frame_view(env) != here
    env.restore(snap)
    assert frame_view(env) == here
    # the restored game goes on exactly like a game replayed from reset
    replayed = TextWorldEnv(tw_task.make_graph.gamefile, fork="replay")
    replayed.reset()
    for c in walkthrough[:5]:
        replayed.step(c)
    assert frame_view(replayed) == here
    for c in walkthrough[5:]:
        env.step(c)
        replayed.step(c)
        assert frame_view(env) == frame_view(replayed)
    assert env.frame.won and env.frame.score == env.frame.max_score
    # a snapshot is data: a fresh env of the same game restores it too
    fresh = TextWorldEnv(tw_task.make_graph.gamefile)
    fresh.restore(snap)
    assert frame_view(fresh) == here
    for c in walkthrough[5:]:
        fresh.step(c)
    assert fresh.frame.won
    # the snapshot survived all that (copy-on-write): restore again, twice
    env.restore(snap)
    assert frame_view(env) == here
    env.step("go west")
    env.restore(snap)
    env.step(walkthrough[5])
    assert env.frame.score == 6


def test_replay_fork_and_errors(tw_task, walkthrough, tw_cache):
    env = TextWorldEnv(tw_task.make_graph.gamefile, fork="replay")
    with pytest.raises(ForkError):
        env.snapshot()
    env.reset()
    env.step(walkthrough[0])
    snap = env.snapshot()
    env.step(walkthrough[1])
    env.restore(snap)
    assert env.frame.score == 1 and env._prefix == (walkthrough[0],)
    other = make_game(3, "custom", {"world_size": 2, "nb_objects": 4, "quest_length": 2}, cache=tw_cache)
    with pytest.raises(ForkError):
        TextWorldEnv(other).restore(snap)
    with pytest.raises(ConfigError):
        TextWorldEnv(tw_task.make_graph.gamefile, fork="copy")
    with pytest.raises(ConfigError):
        make_game(1, "tw-nonsense")


def test_branching_through_checkpoints_with_env_restore(tw_task, walkthrough):
    """The search pattern: at a decision point, snapshot the engine; restore it before each branch."""
    graph, env = tw_task.make_graph(lambda state: {"action": "look"})
    g = graph.builder.compile(checkpointer=InMemorySaver(), interrupt_before=["policy"])
    thread = {"configurable": {"thread_id": "tw"}}
    g.invoke(tw_task.input, thread)
    for c in walkthrough[:2]:
        config = g.update_state(g.get_state(thread).config, {"action": c}, as_node="policy")
        g.invoke(None, config)
    point = g.get_state(thread)
    snap = env.snapshot()
    results, snaps = {}, {}
    for action in ["examine king-size bed", walkthrough[2], "close antique trunk"]:
        env.restore(snap)
        config = g.update_state(point.config, {"action": action}, as_node="policy")
        g.invoke(None, config)
        results[action], snaps[action] = g.get_state(thread), env.snapshot()
    good = results[walkthrough[2]].values
    assert good["score"] == 3 and good["history"][-1]["reward"] == 1.0
    assert results["examine king-size bed"].values["score"] == 2 == results["close antique trunk"].values["score"]
    assert results["examine king-size bed"].values["history"][:2] == good["history"][:2]
    # resume the good branch from its own checkpoint and snapshot (the env last ran another branch)
    env.restore(snaps[walkthrough[2]])
    config = results[walkthrough[2]].config
    for c in walkthrough[3:]:
        config = g.update_state(config, {"action": c}, as_node="policy")
        g.invoke(None, config)
        config = g.get_state(thread).config
    final = g.get_state(thread).values
    assert final["done"] and tw_task.outcome(final) == 1.0


def test_oracle_recovers_after_a_detour(tw_task):
    detour = iter(["examine king-size bed", "inventory", "look"])

    def policy(state):
        return {"action": next(detour, None) or tw_task.oracle(state)}

    out, _ = play(tw_task, policy)
    assert out["won"] and tw_task.outcome(out) == 1.0
    assert tw_task.oracle(tw_task.input) == tw_task.input["policy_commands"][0]


def test_step_limit_scores_partial_progress(tw_cache, walkthrough):
    task = textworld_task(SEED, cache=tw_cache, max_steps=3)
    out, _ = play(task, oracle_policy(task.oracle))
    assert out["done"] and not out["won"] and len(out["history"]) == 3
    assert task.outcome(out) == pytest.approx(3 / out["max_score"])


def test_same_seed_same_game(tw_task, tw_cache, tmp_path):
    again = make_game(SEED, cache=tmp_path)  # generated afresh elsewhere
    assert again.read_bytes() == open(tw_task.make_graph.gamefile, "rb").read()
    cached = make_game(SEED, cache=tw_cache)
    assert str(cached) == tw_task.make_graph.gamefile  # served from the cache
    assert game_id(SEED) == "tw-simple-s12" and game_id(SEED, settings={"test": True}) == "tw-simple-test-s12"
    assert game_id(5, "custom", {"quest_length": 3}) == "custom-quest_length3-s5"


def test_games_share_one_knowledge_base_and_come_out_the_same(tmp_path, monkeypatch):
    from textworld.generator.data import KnowledgeBase

    from trajgraph.adapters import _textworld_games

    loads = []
    parse = KnowledgeBase.__dict__["load"].__func__

    def counted(cls, *args, **kwargs):
        loads.append(args)
        return parse(cls, *args, **kwargs)

    counting = classmethod(counted)
    monkeypatch.setattr(KnowledgeBase, "load", counting)
    monkeypatch.setattr(_textworld_games, "_KNOWLEDGE", {})
    first = make_game(21, cache=tmp_path / "a")  # parses the challenge's knowledge base
    make_game(22, cache=tmp_path / "a")
    again = make_game(21, cache=tmp_path / "b")  # with the knowledge base two games have used
    assert len(loads) == 1
    assert again.read_bytes() == first.read_bytes()
    assert again.with_suffix(".json").read_bytes() == first.with_suffix(".json").read_bytes()
    assert KnowledgeBase.__dict__["load"] is counting  # the class is itself again outside generation


def test_suite_splits(tw_cache):
    suite = TextWorldSuite(cache=str(tw_cache))
    (test,) = suite.tasks("test", 1)
    assert test.id == "tw-simple-test-s0"
    assert test.input["actions"] and test.optimum == 1.0
    with pytest.raises(ConfigError):
        suite.tasks("validation", 1)


def test_prefetch_generates_the_split_in_worker_processes(tmp_path, monkeypatch):
    from trajgraph.adapters import _textworld_games

    def no_generator_here() -> None:
        raise AssertionError("a game was generated in the calling process")

    folder = tmp_path / "parallel"
    suite = TextWorldSuite(cache=str(folder))
    with monkeypatch.context() as m:  # generating here would fail: the worker processes make both games
        m.setattr(_textworld_games, "load_textworld", no_generator_here)
        assert suite.prefetch("train", 2, workers=2).missing == 2
    assert suite.prefetch("train", 2, workers=2).missing == 0  # now cached: nothing to make
    made = sorted(folder.glob("*.z8"))
    assert [p.name.split("-")[2] for p in made] == ["s1000000", "s1000001"]
    for path in made:  # the same bytes as a game made in this process
        seed = int(path.name.split("-")[2][1:])
        assert path.read_bytes() == make_game(seed, settings={"test": False}, cache=tmp_path / "serial").read_bytes()
    with pytest.raises(ConfigError):
        TextWorldSuite(challenge="tw-nonsense", cache=str(folder)).prefetch("test", 2)


def test_games_made_in_the_background(tmp_path, monkeypatch):
    from trajgraph.adapters import _textworld_games

    suite = TextWorldSuite(cache=str(tmp_path))
    jobs = suite.prefetch("test", 1, background=True)  # returns while its one process generates
    assert jobs.missing == 1 and len(jobs.processes) == 1
    monkeypatch.setattr(_textworld_games, "load_textworld", lambda: pytest.fail("generated in the calling process"))
    (path,) = jobs.wait()
    assert path.is_file() and suite.tasks("test", 1)[0].id == "tw-simple-test-s0"


def test_a_worker_process_makes_its_seeds(tmp_path):
    job = {"seeds": [7], "challenge": "tw-simple", "settings": None, "cache": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "trajgraph.adapters._textworld_games", json.dumps(job)], check=True, timeout=300)
    (path,) = tmp_path.glob("tw-simple-s7-*.z8")
    assert path.with_suffix(".json").is_file() and path.read_bytes() == make_game(7, cache=tmp_path / "here").read_bytes()


def test_langgraph_json_graphs_load_and_run(tw_cache, monkeypatch):
    """Every graph in langgraph.json loads by file path (as `langgraph dev` does) and plays an episode."""
    import asyncio
    import importlib.util
    import inspect
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = json.loads((root / "langgraph.json").read_text())
    monkeypatch.setenv("TRAJGRAPH_TEXTWORLD_CACHE", str(tw_cache))
    inputs = {
        "frozenlake": {"task": "", "observation": "", "pos": 0, "history": [], "score": 0.0, "done": False},
        "cliffwalking": {"task": "", "observation": "", "pos": 36, "history": [], "score": 0.0, "done": False},
        "textworld": {"task": "", "history": []},
        "sql_react": {"messages": [("user", "How many employees are there?")]},
    }
    assert set(inputs) <= set(spec["graphs"])  # all of them, served: tests/test_langgraph_server.py
    for name in inputs:
        entry = spec["graphs"][name]
        path, attr = (entry["path"] if isinstance(entry, dict) else entry).split(":")
        module_spec = importlib.util.spec_from_file_location(f"lg_{name}", root / path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        obj = getattr(module, attr)
        graph = obj if isinstance(obj, CompiledStateGraph) else obj({"configurable": {"seed": SEED}})
        if inspect.iscoroutine(graph):  # factories build off the server's event loop
            graph = asyncio.run(graph)
        out = graph.invoke(inputs[name], {"recursion_limit": 100})
        if name == "sql_react":
            assert out["messages"][-1].type == "ai" and not out["messages"][-1].tool_calls
        else:
            assert out["done"] and out["reward"] == 1.0, name
