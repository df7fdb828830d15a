"""Test kit for trajgraph and its users: fake models, scripted policies, tiny environments.

Everything here runs offline and deterministically. LangChain's own fake chat
models do not implement `bind_tools`; `FakeToolModel` does, so the prebuilt
ReAct agent runs on it.
"""

from trajgraph._internal.hermetic import hermetic
from trajgraph.testing.fake_models import FakeToolModel, ScriptedToolModel, fake_tool_call
from trajgraph.testing.tiny_env import (
    CorridorEnv,
    ScriptedPolicy,
    calculator_tools,
    corridor_graph,
    deceptive_chain_graph,
    react_calculator_agent,
)

hermetic()

__all__ = [
    "FakeToolModel",
    "ScriptedToolModel",
    "fake_tool_call",
    "ScriptedPolicy",
    "calculator_tools",
    "CorridorEnv",
    "corridor_graph",
    "deceptive_chain_graph",
    "react_calculator_agent",
    "hermetic",
]
