"""Offline policies (trajgraph.policies) with the real models, and no network.

SmolLM2 is converted from its GGUF once per module into a temporary cache, then
reloaded from the safetensors copy, which every SmolLM2 test uses.
"""

from __future__ import annotations

import asyncio
import collections
import pickle
import socket
from pathlib import Path
from typing import Any

import pytest

import trajgraph  # noqa: F401  (sets the hermetic environment)
from trajgraph.errors import ConfigError
from trajgraph.policies import (
    MiniLM,
    SimulatedPolicy,
    SmolLM2,
    build_messages,
    match_command,
    minilm_policy,
    rank_commands,
    register_smollm2,
    smollm2_policy,
)
from trajgraph.policies.prompt import PolicyStats, StateSeeds, resolve
from trajgraph.testing.choice_task import choice_states
from trajgraph.testing.tiny_env import CHAIN_ACTIONS, chain_env_node, chain_solution, chain_start, env_loop_graph

# isort: split
import torch

NETWORK_ATTEMPTS: list[object] = []


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory: pytest.TempPathFactory):
    """Dead proxies, HF offline, a fresh model cache, and any outbound connect() recorded and refused."""
    mp = pytest.MonkeyPatch()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        mp.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        mp.delenv(var, raising=False)
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setenv("TRAJGRAPH_CACHE", str(tmp_path_factory.mktemp("trajgraph-cache")))

    def refuse(self: socket.socket, address: object) -> None:
        NETWORK_ATTEMPTS.append(address)
        raise OSError(f"network access attempted in an offline test: {address!r}")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket.socket, "connect_ex", refuse)
    yield
    mp.undo()
    assert NETWORK_ATTEMPTS == []


@pytest.fixture(scope="module")
def loads() -> dict[str, SmolLM2]:
    """First load converts the GGUF; the second reads the safetensors cache with pickle disabled."""
    first = SmolLM2.load()

    def no_pickle(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle-based loading was used")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "load", no_pickle)
        mp.setattr(pickle, "load", no_pickle)
        mp.setattr(pickle, "loads", no_pickle)
        mp.setattr(pickle, "Unpickler", no_pickle)
        second = SmolLM2.load()
    return {"gguf": first, "cache": second}


@pytest.fixture(scope="module")
def smol(loads: dict[str, SmolLM2]) -> SmolLM2:
    return loads["cache"]


@pytest.fixture(scope="module")
def encoder() -> MiniLM:
    return MiniLM()


# -- SmolLM2: loading ----------------------------------------------------------------


def test_first_load_converts_gguf_and_second_reuses_safetensors_cache(loads: dict[str, SmolLM2]) -> None:
    first, second = loads["gguf"], loads["cache"]
    print(f"\nSmolLM2 load: gguf {first.load_seconds:.2f}s, cached safetensors {second.load_seconds:.2f}s")
    assert (first.source, second.source) == ("gguf", "cache")
    folder = Path(second.model.name_or_path)
    files = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generate_is_reproducible_with_a_seed_and_leaves_global_rng_alone(smol: SmolLM2) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    before = torch.random.get_rng_state()
    one, _ = smol.generate(messages, n=2, temperature=1.0, max_tokens=6, seed=7)
    two, prompt_tokens = smol.generate(messages, n=2, temperature=1.0, max_tokens=6, seed=7)
    assert torch.equal(before, torch.random.get_rng_state())
    assert [c.token_ids for c in one] == [c.token_ids for c in two]
    assert prompt_tokens == len(smol.chat_ids(messages))
    assert all(0 < len(c.token_ids) <= 6 and len(c.logprobs) == len(c.token_ids) for c in one)


def test_rank_commands_equals_scoring_each_full_sequence(smol: SmolLM2) -> None:
    """The KV-cached batched scorer gives the same log-probabilities as one plain forward per command."""
    state = choice_states(1, seed=3)[0]
    messages, commands = build_messages(state), state["actions"][:4]
    fast = rank_commands(messages, commands, model=smol)
    prompt = smol.chat_ids(messages)
    for command, score in zip(commands, fast):
        reply = smol.tokenizer(command, add_special_tokens=False)["input_ids"] + [smol.eos_id]
        with torch.inference_mode():
            logp = torch.log_softmax(smol.model(torch.tensor([prompt + reply])).logits[0].float(), -1)
        slow = sum(logp[len(prompt) - 1 + j, t].item() for j, t in enumerate(reply))
        assert score == pytest.approx(slow, abs=1e-3)
    means = rank_commands(messages, commands, reduce="mean", model=smol)
    assert all(m > s for m, s in zip(means, fast))  # every command is longer than one token
    with pytest.raises(ConfigError):
        rank_commands(messages, commands, reduce="max", model=smol)


# -- SmolLM2 through litellm -----------------------------------------------------------


def test_litellm_completion_reaches_the_in_process_provider(smol: SmolLM2) -> None:
    import litellm

    name = register_smollm2(smol)
    assert register_smollm2(smol) == name == "smollm2/SmolLM2-135M-Instruct"
    assert [i["provider"] for i in litellm.custom_provider_map].count("smollm2") == 1
    messages = [{"role": "user", "content": "Say hello."}]

    r = litellm.completion(model=name, messages=messages, max_tokens=6, temperature=0)
    assert len(r.choices) == 1 and r.choices[0].message.content.strip()
    ids = r.choices[0].message.provider_specific_fields["token_ids"]
    assert r.usage.prompt_tokens == len(smol.chat_ids(messages))
    assert r.usage.completion_tokens == len(ids) <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    r = litellm.completion(model=name, messages=messages, n=3, max_tokens=5, temperature=1.0, seed=1, logprobs=True, top_logprobs=2)
    assert [c.index for c in r.choices] == [0, 1, 2]
    lengths = [len(c.message.provider_specific_fields["token_ids"]) for c in r.choices]
    assert r.usage.completion_tokens == sum(lengths)
    for choice, n in zip(r.choices, lengths):
        tokens = choice.logprobs.content
        assert len(tokens) == n and all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)
        assert all(t.top_logprobs[0].logprob >= t.logprob - 1e-6 for t in tokens)

    again = litellm.completion(model=name, messages=messages, n=3, max_tokens=5, temperature=1.0, seed=1)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]

    r = asyncio.run(litellm.acompletion(model=name, messages=messages, n=2, max_tokens=4, temperature=0.7))
    assert len(r.choices) == 2 and r.usage.completion_tokens > 0


# -- policies only ever answer admissible commands --------------------------------------


def _with_history(states: list[dict]) -> list[dict]:
    """Give every other state a couple of past steps, so the prompt's history path runs too."""
    for i, s in enumerate(states):
        if i % 2:
            s["history"] = [{"action": "look", "observation": "You look around."}, {"action": s["actions"][0], "observation": "Nothing happens."}]
    return states


def test_smollm2_rank_policy_is_admissible_deterministic_and_batched(smol: SmolLM2) -> None:
    states = _with_history(choice_states(6, seed=5))
    a, b = smollm2_policy("rank", temperature=1.0, seed=3, model=smol), smollm2_policy("rank", temperature=1.0, seed=3, model=smol)
    picks = [a(s)["action"] for s in states]
    assert all(p in s["actions"] for p, s in zip(picks, states))
    assert [b(s)["action"] for s in states[:3]] == picks[:3]
    assert a.stats.calls == 6 and a.stats.tokens > 6 * 50 and a.stats.invalid_outputs == 0
    candidates = asyncio.run(a.propose(states[0], 5))
    assert len(candidates) == 5 and all(c["action"] in states[0]["actions"] for c in candidates)
    assert a.stats.calls == 7 and a.stats.samples == 11  # five candidates, one scoring pass


def test_smollm2_generate_policy_maps_every_reply_to_an_admissible_command(smol: SmolLM2) -> None:
    states = _with_history(choice_states(4, seed=11))
    policy = smollm2_policy("generate", temperature=0.7, seed=0, max_tokens=8, model=smol)
    picks = [policy(s)["action"] for s in states]
    assert all(p in s["actions"] for p, s in zip(picks, states))
    candidates = asyncio.run(policy.propose(states[0], 3))
    assert len(candidates) == 3 and all(c["action"] in states[0]["actions"] for c in candidates)
    stats = policy.stats
    assert stats.calls == 5 and stats.samples == 7 and stats.tokens > 5 * 50
    assert stats.fallbacks <= stats.invalid_outputs <= stats.samples
    assert policy.name == "smollm2-generate(T=0.7)"
    # a single admissible command needs no model call
    assert policy({"task": "t", "observation": "o", "actions": ["wait"]}) == {"action": "wait"}
    assert policy.stats.calls == 5


def test_match_command_and_resolve_count_invalid_replies() -> None:
    commands = ["go north", "take red key from table", "open chest", "look"]
    assert match_command("Go North.", commands) == ("go north", "exact")
    assert match_command("> open chest", commands) == ("open chest", "exact")
    assert match_command("go north and then look", commands) == ("go north", "prefix")
    assert match_command('You choose: "take red key from table"', commands) == ("take red key from table", "substring")
    assert match_command("grab the red key", commands) == ("take red key from table", "overlap")
    assert match_command("xyzzy", commands) == (None, "none")
    stats, rng = PolicyStats(), __import__("random").Random(0)
    assert resolve("open chest", commands, stats, rng) == "open chest" and stats.invalid_outputs == 0
    assert resolve("xyzzy", commands, stats, rng) in commands
    assert (stats.invalid_outputs, stats.fallbacks) == (1, 1)


def test_minilm_policy_beats_random_and_caches_embeddings(encoder: MiniLM) -> None:
    states = _with_history(choice_states(100, seed=2))
    greedy = minilm_policy(temperature=0, encoder=encoder)
    picks = [greedy(s)["action"] for s in states]
    assert all(p in s["actions"] for p, s in zip(picks, states))
    accuracy = sum(p == s["right"] for p, s in zip(picks, states)) / len(states)
    chance = sum(1 / len(s["actions"]) for s in states) / len(states)
    print(f"\nMiniLM greedy accuracy on choice_task: {accuracy:.2f} (random {chance:.2f})")
    assert accuracy > chance + 0.3
    tokens = greedy.stats.tokens
    greedy(states[0])
    assert greedy.stats.tokens == tokens  # every string of that state was cached

    a, b = minilm_policy(temperature=0.1, seed=4, encoder=encoder), minilm_policy(temperature=0.1, seed=4, encoder=encoder)
    assert [a(s)["action"] for s in states[:30]] == [b(s)["action"] for s in states[:30]]
    candidates = asyncio.run(a.propose(states[0], 8))
    assert len(candidates) == 8 and all(c["action"] in states[0]["actions"] for c in candidates)
    assert a.stats.invalid_outputs == 0 and a.name == "minilm(T=0.1)"


def test_minilm_policy_moves_on_to_the_next_instruction(encoder: MiniLM) -> None:
    """An executed action closes the objective sentence it answered, so the next one leads."""
    policy = minilm_policy(temperature=0, encoder=encoder)
    state: dict[str, Any] = {
        "task": "First, open the wooden chest. Then, take the golden key from the chest. Finally, go east.",
        "observation": "You are in a cellar. There is a wooden chest here. An exit leads east.",
        "actions": ["go east", "open wooden chest", "take golden key from wooden chest", "look"],
        "history": [],
    }
    assert policy(state)["action"] == "open wooden chest"
    state["history"] = [{"action": "open wooden chest", "observation": "You open the chest. Inside is a golden key."}]
    state["actions"] = ["go east", "close wooden chest", "take golden key from wooden chest", "look"]
    assert policy(state)["action"] == "take golden key from wooden chest"
    state["history"].append({"action": "take golden key from wooden chest", "observation": "Taken."})
    state["actions"] = ["go east", "close wooden chest", "put golden key in wooden chest", "look"]
    assert policy(state)["action"] == "go east"


def test_simulated_policy_has_the_skill_it_claims() -> None:
    state = {"task": "t", "observation": "o", "actions": ["a", "b", "c", "d", "e"], "history": []}
    policy = SimulatedPolicy(skill=0.6, oracle=lambda s: "c", seed=1)
    assert policy.name == "simulated(skill=0.6)"
    picks = [policy(state)["action"] for _ in range(4000)]
    counts = collections.Counter(picks)
    assert counts["c"] / 4000 == pytest.approx(0.6, abs=0.035)
    assert all(counts[x] / 4000 == pytest.approx(0.1, abs=0.025) for x in "abde")  # uniform over the others
    candidates = asyncio.run(policy.propose(state, 1000))
    assert sum(c["action"] == "c" for c in candidates) / 1000 == pytest.approx(0.6, abs=0.06)
    perfect, hopeless = SimulatedPolicy(1.0, lambda s: "c"), SimulatedPolicy(0.0, lambda s: "c")
    assert all(perfect(state)["action"] == "c" for _ in range(50))
    assert all(hopeless(state)["action"] != "c" for _ in range(50))
    with pytest.raises(ConfigError):
        SimulatedPolicy(1.5, lambda s: "c")


def test_simulated_policy_is_reproducible_and_maps_an_inadmissible_oracle() -> None:
    state = {"task": "t", "observation": "o", "actions": ["go north", "go south", "look"], "history": []}
    a, b = SimulatedPolicy(0.5, lambda s: "go south", seed=9), SimulatedPolicy(0.5, lambda s: "go south", seed=9)
    assert [a(state) for _ in range(30)] == [b(state) for _ in range(30)]
    sloppy = SimulatedPolicy(1.0, lambda s: "Go South!", seed=0)
    assert sloppy(state) == {"action": "go south"} and sloppy.stats.invalid_outputs == 0  # same words
    stale = SimulatedPolicy(1.0, lambda s: "south", seed=0)
    assert stale(state) == {"action": "go south"} and stale.stats.invalid_outputs == 1


def test_policies_need_admissible_actions(encoder: MiniLM) -> None:
    for policy in (SimulatedPolicy(0.5, lambda s: "x"), minilm_policy(encoder=encoder), smollm2_policy("rank")):
        with pytest.raises(ConfigError):
            policy({"task": "t", "observation": "o", "actions": []})
    with pytest.raises(ConfigError):
        smollm2_policy(mode="beam")
    with pytest.raises(ConfigError):
        minilm_policy(temperature=-1)


def test_policies_run_as_decision_nodes_in_a_langgraph_env_loop(encoder: MiniLM) -> None:
    solution = chain_solution(seed=0, depth=6)
    oracle = SimulatedPolicy(1.0, lambda s: solution[s.get("pos", 0)], seed=0)
    graph = env_loop_graph(chain_env_node(solution), oracle).compile()
    final = graph.invoke(chain_start(), {"recursion_limit": 50})
    assert final["reward"] == 1.0 and [h["action"] for h in final["history"]] == solution

    ranker = minilm_policy(temperature=0.5, seed=0, encoder=encoder)
    final = env_loop_graph(chain_env_node(solution), ranker).compile().invoke(chain_start(), {"recursion_limit": 50})
    assert final["done"] and all(h["action"] in CHAIN_ACTIONS for h in final["history"])
    assert ranker.stats.calls == len(final["history"])


def test_import_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, trajgraph.policies; print(sorted(m for m in ('torch', 'transformers', 'litellm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"



# -- reproducible draws ------------------------------------------------------------------


def test_a_shared_policy_draws_by_state_not_by_the_order_of_calls(encoder: MiniLM) -> None:
    states = choice_states(6, seed=4)

    async def draws(order: list[int], concurrently: bool) -> dict[int, list[str]]:
        policy = minilm_policy(temperature=2.0, seed=11, encoder=encoder)
        if concurrently:
            got = await asyncio.gather(*(policy.propose(states[i], 6) for i in order))
        else:
            got = [await policy.propose(states[i], 6) for i in order]
        return {i: [c["action"] for c in cands] for i, cands in zip(order, got)}

    forward = asyncio.run(draws(list(range(6)), concurrently=False))
    assert asyncio.run(draws(list(reversed(range(6))), concurrently=True)) == forward
    assert len({tuple(v) for v in forward.values()}) > 1


def test_state_seeds_give_each_repeat_of_a_state_a_new_stream_and_each_view_a_fresh_count() -> None:
    state = {"task": "open the door", "observation": "A door.", "actions": ["open door", "wait"], "history": []}
    seeds = StateSeeds(5)
    first, second = seeds.rng(state).random(), seeds.rng(state).random()
    assert first != second  # asking again about the same state is a new draw
    assert seeds.view().rng(state).random() == first == StateSeeds(5).rng(state).random()
    assert StateSeeds(6).rng(state).random() != first
    moved = {**state, "history": [{"action": "wait", "observation": "Nothing."}]}
    assert StateSeeds(5).rng(moved).random() != first
