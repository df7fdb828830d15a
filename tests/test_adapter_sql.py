"""SQL tool-use suite: exact answers, clean tool errors, the prebuilt ReAct agent end to end."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from trajgraph.adapters.sql_tools import (
    SqlDatabase,
    SqlSuite,
    answer_matches,
    build_database,
    default_database,
    noisy_sql_model,
    questions,
    sql_tools,
)
from trajgraph.errors import ConfigError
from trajgraph.testing import FakeToolModel, fake_tool_call


def table(name: str) -> list[dict]:
    con = sqlite3.connect(":memory:")
    con.deserialize(build_database(0))
    con.row_factory = sqlite3.Row
    return [dict(r) for r in con.execute(f"SELECT * FROM {name}")]


def by_text(fragment: str):
    return next(q for q in questions() if fragment in q.text)


def test_answers_are_exact_against_python():
    emps, depts, prods, sales = table("employees"), table("departments"), table("products"), table("sales")
    dept_name = {d["id"]: d["name"] for d in depts}
    price = {p["id"]: p["price"] for p in prods}
    assert by_text("How many employees are there").answer == str(len(emps))
    assert by_text("highest-paid").answer == max(emps, key=lambda e: e["salary"])["name"]
    in_sales = sum(1 for e in emps if dept_name[e["department_id"]] == "Sales")
    assert by_text("work in the Sales department").answer == str(in_sales)
    revenue = Counter()
    for s in sales:
        revenue[s["region"]] += s["quantity"] * price[s["product_id"]]
    assert by_text("region had the highest").answer == revenue.most_common(1)[0][0]
    assert float(by_text("revenue of the North").answer) == round(revenue["North"], 2)
    assert float(by_text("total revenue of all sales").answer) == round(sum(revenue.values()), 2)
    july = sum(1 for s in sales if s["sale_date"].startswith("2025-07-"))
    assert by_text("July 2025").answer == str(july)


def test_questions_are_stable_unique_and_have_wrong_variants():
    qs = questions()
    assert 10 <= len(qs) <= 30
    assert len({q.id for q in qs}) == len(qs) == len({q.text for q in qs})
    assert build_database(0) == build_database(0) != build_database(1)
    db = default_database()
    for q in qs:
        _, rows = db.query(q.wrong_sql)
        assert rows and not answer_matches(str(rows[0][0]), q.answer), q.id


def test_answer_matching():
    assert answer_matches("The answer is 1,234.50 dollars.", "1234.50")
    assert answer_matches("It is 1234.5", "1234.50")
    assert not answer_matches("It is 11234.5", "1234.50") and not answer_matches("about 1234", "1234.50")
    assert answer_matches("paris, of course", "Paris") and not answer_matches("Parisian", "Paris")
    assert not answer_matches("12", "2") and answer_matches("-3 units", "-3")


def test_tools_are_read_only_and_errors_are_messages(tmp_path):
    tools = {t.name: t for t in sql_tools(default_database())}
    assert tools["list_tables"].invoke({}) == "departments, employees, products, sales"
    assert "salary INTEGER" in tools["describe_table"].invoke({"table": "employees"})
    assert tools["describe_table"].invoke({"table": "staff"}).startswith("Error: no table named 'staff'")
    run = tools["run_sql"]
    assert run.invoke({"query": "SELECT COUNT(*) FROM employees"}) == "COUNT(*)\n40"
    assert run.invoke({"query": "SELECT * FROM staff"}) == "Error: no such table: staff"
    assert run.invoke({"query": "DELETE FROM sales"}).startswith("Error: attempt to write a readonly database")
    assert run.invoke({"query": "SELECT 1; SELECT 2"}).startswith("Error")
    evil = tmp_path / "evil.db"
    assert run.invoke({"query": f"ATTACH DATABASE '{evil}' AS e"}).startswith("Error: not authorized")
    assert not evil.exists()
    assert run.invoke({"query": "PRAGMA query_only = OFF"}).startswith("Error")
    assert "interrupted" in run.invoke({"query": "SELECT COUNT(*) FROM sales a, sales b, sales c"})
    assert "more than 20 rows" in run.invoke({"query": "SELECT * FROM sales"})
    assert run.invoke({"query": "SELECT COUNT(*) FROM sales"}) == "COUNT(*)\n300"  # nothing was deleted


def gold_model():
    """Looks at the tables, runs the gold query, then answers from the result."""

    def respond(messages, rng):
        human = next(m for m in messages if m.type == "human")
        q = next(x for x in questions() if x.text == human.content)
        n_tools = sum(1 for m in messages if m.type == "tool")
        if n_tools == 0:
            return fake_tool_call("list_tables")
        if n_tools == 1:
            return fake_tool_call("run_sql", query=q.sql)
        value = messages[-1].content.splitlines()[1]
        return f"The answer is {value}."

    return FakeToolModel(respond=respond)


def test_react_agent_end_to_end_with_exact_outcome():
    suite = SqlSuite()
    tasks = suite.tasks("test", 30)
    assert len(tasks) == 15 and all(t.decision_node == "agent" and t.optimum == 1.0 for t in tasks)
    for task in tasks[:5]:
        graph, env = task.make_graph(gold_model())
        assert env is None and "agent" in graph.nodes
        out = graph.invoke(task.input, {"recursion_limit": 2 * task.max_steps + 2})
        assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai", "tool", "ai"]
        assert task.outcome(out) == 1.0
    wrong = {"messages": [*out["messages"][:-1], AIMessage(content="The answer is 987654321.")]}
    assert task.outcome(wrong) == 0.0
    assert task.outcome({"messages": out["messages"][:2]}) is None  # still calling tools


def test_splits_are_disjoint_and_cover_the_questions():
    test, train = SqlSuite().tasks("test", 100), SqlSuite().tasks("train", 100)
    assert not {t.id for t in test} & {t.id for t in train}
    assert len(test) + len(train) == len(questions())
    assert [t.id for t in SqlSuite().tasks("test", 4, seed=3)] == [t.id for t in SqlSuite().tasks("test", 4, seed=3)]
    with pytest.raises(ConfigError):
        SqlSuite().tasks("test", 0)


def test_noisy_model_fails_sometimes_and_search_at_agent_node_finds_the_answer():
    tasks = SqlSuite().tasks("test", 15)
    outcomes = []
    for i, task in enumerate(tasks):
        graph, _ = task.make_graph(noisy_sql_model(skill=0.5, seed=i))
        outcomes.append(task.outcome(graph.invoke(task.input, {"recursion_limit": 20})))
    assert 0 < sum(outcomes) < len(outcomes)  # noisy: some right, some wrong
    # best-of-n over the agent's first decision: fork the thread at the checkpoint before "agent"
    task = tasks[outcomes.index(0.0)]
    model = noisy_sql_model(skill=0.5, seed=1)
    graph, _ = task.make_graph(model)
    g = graph.builder.compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "best-of-n"}, "recursion_limit": 20}
    first = g.invoke(task.input, thread)
    root = next(s.config for s in g.get_state_history(thread) if s.next == ("agent",) and len(s.values["messages"]) == 1)
    outcomes_k = [task.outcome(first)]
    for _ in range(7):
        outcomes_k.append(task.outcome(g.invoke(None, {**root, "recursion_limit": 20})))
    best = max(outcomes_k)
    assert len(set(outcomes_k)) == 2  # the branches differ: some right, some wrong
    assert best == 1.0 and model.calls >= 8


def test_database_is_isolated_per_query():
    db = SqlDatabase(build_database(0))
    con = db.connect()
    with pytest.raises(sqlite3.OperationalError):
        con.execute("INSERT INTO departments VALUES (99, 'x', 'y', 1)")
    assert db.query("SELECT COUNT(*) FROM departments")[1] == [(6,)]
