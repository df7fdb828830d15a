"""Put a trained policy back into the user's graph.

`with_policy(graph, policy, decision_node=...)` returns a copy of the compiled
graph whose decision node asks `policy` for its update; every other node, edge,
routing function, retry and cache policy stays as the user built it (the node's
runnable is swapped, as `record` does). The result is an ordinary compiled graph:
`tg.record` records it, `tg.optimize` / `tg.search` search it (their candidates
then come from the trained policy, because a search samples the agent's own
decision node unless `policy=` says otherwise), and it can be a node of a
larger graph. `policy` is a trained folder (`load_policy`) or any object with
`async propose(state, k)` (trajgraph.search.policy.Policy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trajgraph._internal.aio import run_sync
from trajgraph._internal.langgraph import compiled_graph, node_runnables, require_nodes, with_node_runnables
from trajgraph.errors import ConfigError
from trajgraph.policies import head as trainable
from trajgraph.policies import lm


def decision_node_of(graph: Any, decision_node: str = "policy") -> Any:
    """The user's own decision node as a callable `(state) -> update` (the object or function passed to
    `add_node`, so its `scores` and `temperature` are seen when it has them)."""
    compiled = compiled_graph(graph, "decision_node_of()")
    require_nodes(compiled, decision_node)
    bound = node_runnables(compiled)[decision_node]
    func = getattr(bound, "func", None) or getattr(bound, "afunc", None)
    if func is None:
        return bound.invoke
    owner = getattr(func, "__self__", None)  # a bound method (obj.__call__, obj.decide): the object may expose scores
    if owner is not None and callable(getattr(owner, "scores", None)) and callable(owner):
        return owner
    return func


def load_policy(path: str | Path, **options: Any) -> Any:
    """A trained folder as a policy: a MiniLM head (policy.json) or a causal LM (config.json + safetensors).

    options go to the loader (temperature, seed, base, top_k; for an LM also mode="rank"|"generate")."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"model folder {path} does not exist; give the folder `trajgraph train policy --out` wrote")
    if trainable.is_policy_folder(path):
        return trainable.load_trainable_policy(path, **options)
    if lm.is_lm_folder(path):
        return lm.load_lm_policy(path, **options)
    raise ConfigError(f"{path}: not a trained policy folder (no policy.json + head.safetensors, no config.json + *.safetensors)")


def policy_version(policy: Any) -> dict[str, Any]:
    """{"name", "hash", "round"} of a trained policy; a plain policy gives its name and no hash."""
    version = getattr(policy, "version", None)
    if isinstance(version, dict):
        return dict(version)
    return {"name": str(getattr(policy, "name", type(policy).__name__)), "hash": None, "round": None}


def as_node_policy(policy: Any) -> Any:
    """A folder path -> the loaded policy; an object with `propose` as it is."""
    if isinstance(policy, (str, Path)):
        return load_policy(policy)
    if not hasattr(policy, "propose"):
        raise ConfigError(f"policy must be a trained model folder or have `async propose(state, k)`; got {type(policy).__name__}")
    return policy


def with_policy(graph: Any, policy: Any, *, decision_node: str = "policy", **options: Any) -> Any:
    """The compiled `graph` with `decision_node` served by `policy` (a folder path or a policy object).

    A head trained over the graph's own decision node gets that node back as its base; an
    untrained one (or one whose fit kept its initial weights) *is* that node, so the graph is
    returned with the node unchanged. options go to `load_policy` for a folder."""
    from langchain_core.runnables import RunnableLambda

    compiled = compiled_graph(graph, "with_policy()")
    require_nodes(compiled, decision_node)
    if isinstance(policy, (str, Path)):
        folder = Path(policy)
        if trainable.is_policy_folder(folder) and (trainable.read_card(folder).get("base") or {}).get("kind") == "node":
            options.setdefault("base", decision_node_of(compiled, decision_node))
        chosen = load_policy(folder, **options)
    else:
        chosen = as_node_policy(policy)
    if getattr(chosen, "reproduces_base", False):
        return compiled  # the untrained head is exactly the user's node: keep the node itself

    async def decide(state: dict[str, Any]) -> Any:
        updates = await chosen.propose(dict(state), 1)
        if not updates:
            raise ConfigError(f"policy {getattr(chosen, 'name', chosen)!r} proposed no action")
        if isinstance(updates[0], BaseException):
            raise updates[0]
        return updates[0]

    def decide_sync(state: dict[str, Any]) -> Any:
        return run_sync(decide(state))

    node = RunnableLambda(decide_sync, afunc=decide, name=decision_node)
    return with_node_runnables(compiled, {decision_node: (node, [])})


__all__ = ["with_policy", "load_policy", "policy_version", "as_node_policy", "decision_node_of"]
