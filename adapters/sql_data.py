"""The SQL suite's data: a seeded database, and questions whose exact answers are computed from it.

Kept apart from sql_tools.py (the tools, the agent, the tasks) because this is the
ground truth every other part is judged by: the same seed gives the same bytes,
each question's answer comes from its gold SQL (questions without one clear
answer are dropped), and each question carries a plausible wrong query that the
scripted noisy model uses. `answer_matches` is how a reply is checked against it.
"""

from __future__ import annotations

import random
import re
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from trajgraph.errors import ConfigError

MAX_ROWS = 20  # rows a query returns to the agent (one more is fetched, to tell that there were more)

_DEPARTMENTS = [("Engineering", "Berlin"), ("Sales", "Madrid"), ("Marketing", "Paris"), ("Finance", "Zurich"),
                ("Support", "Lisbon"), ("Research", "Oslo")]
_FIRST = ["Ada", "Ben", "Chloe", "Dev", "Emil", "Farah", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Marco", "Nina",
          "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tara"]
_LAST = ["Alvarez", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen"]
_TITLES = ["Engineer", "Analyst", "Manager", "Associate", "Specialist"]
_PRODUCTS = [("Widget", "hardware", 19.99), ("Gadget", "hardware", 54.5), ("Sprocket", "hardware", 7.25),
             ("Gizmo", "hardware", 89.0), ("Dashboard Pro", "software", 120.0), ("Insight Lite", "software", 35.0),
             ("Cloud Sync", "software", 64.99), ("Setup Service", "services", 150.0), ("Training Day", "services", 480.0),
             ("Support Plan", "services", 99.0), ("Cable Kit", "accessories", 12.49), ("Carry Case", "accessories", 29.95)]
_REGIONS = ["North", "South", "East", "West"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def build_database(seed: int = 0) -> bytes:
    """The suite's database, serialized (sqlite3 `Connection.serialize`); the same seed gives the same bytes."""
    rng = random.Random(seed)
    con = sqlite3.connect(":memory:")
    con.executescript("""
        CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, budget INTEGER NOT NULL);
        CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL, department_id INTEGER REFERENCES departments(id),
                                title TEXT NOT NULL, salary INTEGER NOT NULL, hire_year INTEGER NOT NULL,
                                manager_id INTEGER REFERENCES employees(id));
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);
        CREATE TABLE sales (id INTEGER PRIMARY KEY, employee_id INTEGER REFERENCES employees(id),
                            product_id INTEGER REFERENCES products(id), quantity INTEGER NOT NULL,
                            sale_date TEXT NOT NULL, region TEXT NOT NULL);
    """)
    con.executemany("INSERT INTO departments VALUES (?, ?, ?, ?)",
                    [(i + 1, n, c, rng.randrange(200, 2000) * 1000) for i, (n, c) in enumerate(_DEPARTMENTS)])
    names = rng.sample([f"{f} {last}" for f in _FIRST for last in _LAST], 40)
    heads: dict[int, int] = {}
    rows = []
    for i, name in enumerate(names, 1):
        dept = (i - 1) % len(_DEPARTMENTS) + 1 if i <= len(_DEPARTMENTS) else rng.randrange(1, len(_DEPARTMENTS) + 1)
        head = heads.setdefault(dept, i)
        title = "Head" if head == i else rng.choice(_TITLES)
        salary = rng.randrange(40, 160) * 1000 + (60000 if head == i else 0)
        rows.append((i, name, dept, title, salary, rng.randrange(2012, 2026), None if head == i else head))
    con.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", [(i + 1, *p) for i, p in enumerate(_PRODUCTS)])
    con.executemany("INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?)", [
        (i, rng.randrange(1, 41), rng.randrange(1, len(_PRODUCTS) + 1), rng.randrange(1, 10),
         f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}", rng.choice(_REGIONS)) for i in range(1, 301)])
    con.commit()
    data = con.serialize()
    con.close()
    return data


_READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "foreign_key_list"}


def _authorize(action: int, arg1: str | None, *_: Any) -> int:
    """query_only blocks writes, but ATTACH would still create a file, and some pragmas change settings."""
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg1 not in _READ_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class SqlDatabase:
    """Read-only access to a serialized database: each query runs on a fresh in-memory copy."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(":memory:")
        con.deserialize(self.data)
        con.execute("PRAGMA query_only = ON")
        con.execute("SELECT count(*) FROM sqlite_master").fetchall()  # load the schema before the authorizer
        con.set_authorizer(_authorize)
        steps = [0]

        def budget() -> int:  # abort runaway queries (a cross join of sales with itself thrice)
            steps[0] += 1
            return 1 if steps[0] > 5_000 else 0

        con.set_progress_handler(budget, 1000)
        return con

    def tables(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")[1]]

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        con = self.connect()
        try:
            cur = con.execute(sql)
            cols = [d[0] for d in cur.description or []]
            return cols, cur.fetchmany(MAX_ROWS + 1)
        finally:
            con.close()


@lru_cache(maxsize=4)
def database(seed: int) -> SqlDatabase:
    """The database of `seed` (the last few are kept, built once each)."""
    return SqlDatabase(build_database(seed))


def default_database() -> SqlDatabase:
    return database(0)


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    sql: str  # gold query; its first cell is the answer
    answer: str
    wrong_sql: str  # a plausible mistake that runs and gives another answer (the noisy model's)


def _templates() -> list[tuple[str, str]]:
    """(question, gold SQL) pairs; those whose answer is not unique are dropped when answers are computed."""
    q: list[tuple[str, str]] = [
        ("How many employees are there?", "SELECT COUNT(*) FROM employees"),
        ("How many products cost more than 50 dollars?", "SELECT COUNT(*) FROM products WHERE price > 50"),
        ("How many sales were recorded in total?", "SELECT COUNT(*) FROM sales"),
        ("What is the name of the highest-paid employee?",
         "SELECT name FROM employees ORDER BY salary DESC LIMIT 1"),
        ("Which department has the largest budget?", "SELECT name FROM departments ORDER BY budget DESC LIMIT 1"),
        ("What is the name of the most expensive product?", "SELECT name FROM products ORDER BY price DESC LIMIT 1"),
        ("How many employees were hired in 2020 or later?", "SELECT COUNT(*) FROM employees WHERE hire_year >= 2020"),
        ("Which region had the highest sales revenue (quantity times price)?",
         "SELECT s.region FROM sales s JOIN products p ON p.id = s.product_id GROUP BY s.region "
         "ORDER BY SUM(s.quantity * p.price) DESC LIMIT 1"),
        ("Which employee made the largest number of sales?",
         "SELECT e.name FROM sales s JOIN employees e ON e.id = s.employee_id GROUP BY e.id "
         "ORDER BY COUNT(*) DESC LIMIT 1"),
        ("What is the total revenue of all sales, rounded to 2 decimals?",
         "SELECT ROUND(SUM(s.quantity * p.price), 2) FROM sales s JOIN products p ON p.id = s.product_id"),
    ]
    for dept in ("Engineering", "Sales", "Research"):
        q.append((f"How many employees work in the {dept} department?",
                  f"SELECT COUNT(*) FROM employees e JOIN departments d ON d.id = e.department_id WHERE d.name = '{dept}'"))
    for dept in ("Marketing", "Finance"):
        q.append((f"What is the total salary of the {dept} department?",
                  f"SELECT SUM(salary) FROM employees e JOIN departments d ON d.id = e.department_id WHERE d.name = '{dept}'"))
        q.append((f"Which city is the {dept} department in?", f"SELECT city FROM departments WHERE name = '{dept}'"))
    q.append(("What is the average salary in the Support department, rounded to 2 decimals?",
              "SELECT ROUND(AVG(salary), 2) FROM employees e JOIN departments d ON d.id = e.department_id "
              "WHERE d.name = 'Support'"))
    for product in ("Widget", "Cloud Sync", "Training Day"):
        q.append((f"How many units of {product} were sold in total?",
                  f"SELECT SUM(s.quantity) FROM sales s JOIN products p ON p.id = s.product_id WHERE p.name = '{product}'"))
    for category in ("software", "services"):
        q.append((f"What is the total revenue from {category} products, rounded to 2 decimals?",
                  "SELECT ROUND(SUM(s.quantity * p.price), 2) FROM sales s JOIN products p ON p.id = s.product_id "
                  f"WHERE p.category = '{category}'"))
    for month in (3, 7):
        q.append((f"How many sales were made in {_MONTHS[month - 1]} 2025?",
                  f"SELECT COUNT(*) FROM sales WHERE sale_date LIKE '2025-{month:02d}-%'"))
    for region in ("North",):
        q.append((f"What is the sales revenue of the {region} region, rounded to 2 decimals?",
                  "SELECT ROUND(SUM(s.quantity * p.price), 2) FROM sales s JOIN products p ON p.id = s.product_id "
                  f"WHERE s.region = '{region}'"))
    for emp_id in (7, 23):
        q.append((f"Which department does employee number {emp_id} work in?",
                  f"SELECT d.name FROM employees e JOIN departments d ON d.id = e.department_id WHERE e.id = {emp_id}"))
        q.append((f"What is the name of the manager of employee number {emp_id}?",
                  f"SELECT m.name FROM employees e JOIN employees m ON m.id = e.manager_id WHERE e.id = {emp_id}"))
    return q


def _answer(db: SqlDatabase, sql: str) -> str | None:
    """The first cell, formatted; None if the query does not have one answer (no rows, NULL, or a tie)."""
    cols, rows = db.query(sql)
    if not rows or rows[0][0] is None:
        return None
    top = re.search(r"ORDER BY (.+) DESC LIMIT 1$", sql)
    if top:  # a top-1 question needs a strict winner: compare the sort keys of the first two rows
        key_sql = sql.replace("SELECT ", f"SELECT {top.group(1)}, ", 1).replace(" LIMIT 1", " LIMIT 2")
        keys = [r[0] for r in db.query(key_sql)[1]]
        if len(keys) == 2 and keys[0] == keys[1]:
            return None
    value = rows[0][0]
    return f"{value:.2f}" if isinstance(value, float) and "ROUND(" in sql else str(value)


def _wrong_variants(sql: str) -> list[str]:
    """Plausible mistakes: the wrong table, the wrong filter value, the wrong sort order or comparison."""
    out = []
    for x, y in (("FROM employees", "FROM sales"), ("FROM sales", "FROM employees"), ("FROM products", "FROM sales"),
                 ("FROM departments", "FROM employees"), ("DESC", "ASC"), (" >= ", " < "), (" > ", " < "),
                 ("e.manager_id", "e.id"), ("SUM(s.quantity * p.price)", "SUM(p.price)"), ("COUNT(*) FROM sales", "COUNT(DISTINCT employee_id) FROM sales")):
        if x in sql:
            out.append(sql.replace(x, y, 1))
    domains = [[d for d, _ in _DEPARTMENTS], [p for p, _, _ in _PRODUCTS], sorted({c for _, c, _ in _PRODUCTS}), _REGIONS]
    for literal in re.findall(r"'([^']*)'", sql):
        for domain in domains:
            if literal in domain:
                out += [sql.replace(f"'{literal}'", f"'{other}'", 1) for other in domain if other != literal]
    for m in re.finditer(r"-(\d\d)-|= (\d+)$", sql):  # the month after, the next employee
        out.append(sql[: m.start()] + (f"-{int(m.group(1)) % 12 + 1:02d}-" if m.group(1) else f"= {int(m.group(2)) + 1}")
                   + sql[m.end():])
    return out


@lru_cache(maxsize=4)
def questions(seed: int = 0) -> tuple[Question, ...]:
    """The suite's questions with their exact answers on the database of `seed`."""
    db = database(seed)
    out: list[Question] = []
    for text, sql in _templates():
        answer = _answer(db, sql)
        if answer is None:
            continue
        wrong = next((w for w in _wrong_variants(sql) if _differs(_safe_answer(db, w), answer)), None)
        if wrong is None:
            raise ConfigError(f"no wrong variant for question {text!r}")  # a template bug, caught by the tests
        out.append(Question(f"sql-q{len(out):02d}", text, sql, answer, wrong))
    return tuple(out)


def _differs(value: str | None, answer: str) -> bool:
    return value is not None and not answer_matches(value, answer)


def _safe_answer(db: SqlDatabase, sql: str) -> str | None:
    try:
        cols, rows = db.query(sql)
    except sqlite3.Error:
        return None
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def answer_matches(text: str, answer: str) -> bool:
    """Numbers by value (1234.5 == 1,234.50); names as whole words, case-insensitive."""
    try:
        target = float(answer)
    except ValueError:
        return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", text, re.IGNORECASE) is not None
    for m in _NUMBER.finditer(text):
        if abs(float(m.group().replace(",", "")) - target) < 1e-9:
            return True
    return False


__all__ = ["MAX_ROWS", "SqlDatabase", "Question", "build_database", "database", "default_database", "questions",
           "answer_matches"]
