"""Ready-made agent graphs (installed as trajgraph.graphs); langgraph.json serves them.

- `env_loop`: `EnvState` and the one env-loop builder, and the toy-text / TextWorld graphs;
- `chain`: the deceptive chain (a known optimum and a trap), the searches' yardstick;
- `sql_react`: the prebuilt ReAct agent over the offline SQL questions;
- `served`: that agent recorded (`tg.record`) and optimized (`tg.optimize`), writing to $TRAJGRAPH_DB;
- `_inputs`: `expect_input`, the input check every shipped graph runs first.
"""
