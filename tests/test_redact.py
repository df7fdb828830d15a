"""The default redaction (trajgraph/store/redact.py, issue 20): every secret format it knows is
replaced, ordinary text is left alone, JSON stays JSON, the store's pre-check never lets a secret
through, and the time is linear in the text."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from trajgraph.store import Store
from trajgraph.store.json import dumps
from trajgraph.store.redact import REDACTED, is_secret_name, may_hold_secret, redact_secrets, redact_value

# (label, text with one secret, the secret): built from parts so no scanner flags this file
SECRETS = [
    ("url password", "postgres://bob:" + "hunter2x" + "@db.example.com:5432/app", "hunter2x"),
    ("url password, empty user", "redis://:" + "s3cr3tpw" + "@cache:6379/0", "s3cr3tpw"),
    ("query password", "https://example.com/login?user=bob&password=" + "hunter2x" + "&next=/", "hunter2x"),
    ("stripe live", "charge with sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc"),
    ("stripe restricted", "key rk_live_" + "51Habcdefghij0123456789", "51Habcdefghij0123456789"),
    ("gitlab", "export TOKEN_X glpat-" + "xK9fQ2mZ7vL1pR4tY8wB", "xK9fQ2mZ7vL1pR4tY8wB"),
    ("jwt", "cookie eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0." + "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("pem rsa", "key:\n-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEpAIBAAKCAQEAx7Qz\nq9Zt+/w=\n-----END RSA PRIVATE KEY-----\nok",
     "MIIEpAIBAAKCAQEAx7Qz"),
    ("pem openssh, cut off", "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"),
    ("aws secret next to its id", "AKIA" + "IOSFODNN7EXAMPLE " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws secret, labelled", "AKIA" + "IOSFODNN7EXAMPLE, secret key: " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws id", "id ASIA" + "IOSFODNN7EXAMPLE", "IOSFODNN7EXAMPLE"),
    ("openai", "sk-proj-" + "A1b2C3d4" * 4, "A1b2C3d4" * 4),
    ("anthropic", "sk-ant-api03-" + "x" * 30, "x" * 30),
    ("github", "ghp_" + "a1" * 18, "a1" * 18),
    ("github fine-grained", "github_pat_" + "11AB" * 10, "11AB" * 10),
    ("github token as url user", "https://ghp_" + "b2" * 18 + ":x-oauth-basic@github.com/o/r.git", "b2" * 18),
    ("slack", "xoxb-" + "1234567890-abcdefghij", "1234567890-abcdefghij"),
    ("slack webhook", "https://hooks.slack.com/services/" + "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
     "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
    ("google api key", "AIza" + "SyA-" + "b" * 31, "b" * 31),
    ("google oauth token", "ya29." + "a0AfH6SMB" + "c" * 20, "c" * 20),
    ("google client secret", "GOCSPX-" + "d" * 28, "d" * 28),
    ("hugging face", "hf_" + "e" * 34, "e" * 34),
    ("npm", "npm_" + "f" * 36, "f" * 36),
    ("pypi", "pypi-AgEIcHlwaS5vcmc" + "g" * 60, "g" * 60),
    ("sendgrid", "SG." + "h" * 22 + "." + "i" * 43, "i" * 43),
    ("digitalocean", "dop_v1_" + "0a" * 32, "0a" * 32),
    ("shopify", "shpat_" + "0b" * 16, "0b" * 16),
    ("bearer", "curl -H 'Authorization: Bearer " + "abc.DEF-ghi_123'", "abc.DEF-ghi_123"),
    ("basic", "Authorization: Basic " + "dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("name=value", "AWS_SECRET_ACCESS_KEY=" + "wJalrXUtnFEMI/K7MDENG ok", "wJalrXUtnFEMI/K7MDENG"),
    ("django secret key", "SECRET_KEY = " + "'django-insecure-abc'", "django-insecure-abc"),
    ("yaml password", "db:\n  password: " + "correcthorse\n", "correcthorse"),
    ("json pair in text", '{"api_key": "' + "abc def" + '", "n": 1}', "abc def"),
    ("repr pair", "{'client_secret': '" + "zzz-top" + "'}", "zzz-top"),
]

ORDINARY = [
    "the skeleton key-ring sk-short",
    "Time: 12:30, ratio 3:1, see https://example.com/a?b=c&d=e#top",
    "git commit 3f786850e387550fdab836ed7e6dc881de23001b touched AKIA-land",
    "The secret garden. A password-protected file. token_ids=[1,2] max_tokens=5 keyboard: yes",
    "user@example.com mailto:bob@example.com ssh://git@github.com/o/r",
    "base64 aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRlc3Q= and uuid 123e4567-e89b-12d3-a456-426614174000",
    "sk-learn is a library; risk_live_score=3; desk_test_run=1",
    "You are in a kitchen. There is a fridge here. > open fridge\nYou open the fridge.",
    '{"messages": [{"type": "ai", "content": "multiply(3, 4) = 12"}], "max_tokens": 5}',
    "def f(x: int) -> int:\n    return x * 2  # a -----BEGIN marker in a comment",
    "Bearer of bad news; basic math",
    "eyJ is how base64 of {\" begins; shpat is a word",
]


@pytest.mark.parametrize("label,text,secret", SECRETS, ids=[s[0] for s in SECRETS])
def test_each_secret_format_is_redacted(label: str, text: str, secret: str) -> None:
    out = redact_secrets(text)
    assert secret not in out and REDACTED in out, (label, out)
    first = text.split()[0]
    if secret not in first and not first.startswith(("-----", "AKIA")):  # the text around the secret stays
        assert out.startswith(first), (label, out)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact_secrets(text) == text
    value = {"content": text, "items": [text]}
    assert redact_value(value) is value


def test_json_text_stays_json() -> None:
    text = '{"password": 12345, "x-api-key": "abc", "api_key": null, "secret": true, "max_tokens": 5, "token_ids": [1]}'
    out = redact_secrets(text)
    assert json.loads(out) == {"password": REDACTED, "x-api-key": REDACTED, "api_key": None, "secret": True,
                               "max_tokens": 5, "token_ids": [1]}


def test_value_walk() -> None:
    value: dict[str, Any] = {"auth": {"refresh_token": "r-1", "pin_password": 1234, "has_password": True},
                             "credentials": {"user": "bob"}, "log": ["ok", "password=hunter2"], "n": 1.5,
                             "sk-proj-" + "Q" * 20: "a token as a key"}
    out = redact_value(value)
    assert out == {"auth": {"refresh_token": REDACTED, "pin_password": REDACTED, "has_password": True},
                   "credentials": REDACTED, "log": ["ok", f"password={REDACTED}"], "n": 1.5, REDACTED: "a token as a key"}
    assert value["auth"]["refresh_token"] == "r-1"  # the input is not modified
    plain = {"a": [1, "two", {"b": "three"}]}
    assert redact_value(plain) is plain  # nothing to redact: the same object, no copy


def test_names() -> None:
    secret = ["api_key", "openai_api_key", "x-api-key", "AWS_SECRET_ACCESS_KEY", "access_key_id", "auth_token",
              "X-Auth-Token", "SECRET_KEY", "client_secret", "password", "db.password", "Set-Cookie", "private_token"]
    plain = ["max_tokens", "token_ids", "top_p", "key", "token", "keyboard", "passage", "secretary", "author"]
    assert [n for n in secret + plain if is_secret_name(n)] == secret


def _shapes(text: str, secret: str) -> list[Any]:
    """Ways a secret reaches a JSON column: plain, after an escaped newline or tab, quoted, JSON inside a string."""
    return [
        {"content": text},
        {"content": "line one\n" + text},
        {"content": "col\t" + text},
        {"content": json.dumps({"note": text})},
        {"tool_calls": [{"args": {"cmd": text}}]},
        ["x", ["y", text]],
    ]


@pytest.mark.parametrize("label,text,secret", SECRETS, ids=[s[0] for s in SECRETS])
def test_the_json_precheck_never_skips_a_secret(label: str, text: str, secret: str) -> None:
    for value in _shapes(text, secret):
        encoded = dumps(value)
        assert may_hold_secret(encoded), (label, encoded)
        assert secret not in dumps(value, None, redact_value), (label, value)


def _credential_names() -> list[str]:
    """Every credential name the key rule knows, as people write them: snake, kebab, dotted, spaced,
    upper and title case, with a prefix (`openai_api_key`)."""
    from trajgraph.store.redact import _SUFFIXES

    names = []
    for suffix in _SUFFIXES:
        for sep in ("_", "-", ".", " "):
            name = suffix.replace("_", sep)
            names += [name, name.upper(), name.title(), "my_" + name]
    return names


def test_credential_keys_reach_the_precheck() -> None:
    assert all(is_secret_name(name) for name in _credential_names())
    for key in ("api_key", "X-Api-Key", "password", "refresh_token", "Set-Cookie", "client_secret", *_credential_names()):
        for value in ({key: "v"}, {key: 12345}, {key: {"inner": "v"}}, {"a": [{key: "v"}]}, {"s": f'{key}\t= v'}):
            assert may_hold_secret(dumps(value)), (key, value)


def test_every_credential_name_holds_a_word_the_precheck_looks_for() -> None:
    """The pre-check finds credential names in ASCII text by substring: every suffix must hold one of its words."""
    from trajgraph.store.redact import _NAME_WORDS, _SUFFIXES

    assert all(any(word in suffix for word in (*_NAME_WORDS, "token")) for suffix in _SUFFIXES)


def test_the_precheck_skips_usage_metadata_and_finds_token_names() -> None:
    # every recorded model message carries input_tokens / output_tokens: no name ends "tokens", so no walk
    usage = {"usage_metadata": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}, "max_tokens": 5}
    assert not may_hold_secret(dumps(usage))
    for value in ({"auth_token": "v"}, {"s": "session_token=abcdefgh"}, {"s": "X-Auth-Token: abcdefgh"}, {"s": "token"}):
        assert may_hold_secret(dumps(value)), value


def test_the_precheck_folds_case_as_the_patterns_do_beyond_ascii() -> None:
    """The patterns match case-insensitively with Python's folding, which maps "ı" to "i" and "ſ" to "s"
    where str.lower() does not: text outside ASCII takes the full scan, so such a pair is still redacted."""
    for text, secret in (("cookıe=abc12345", "abc12345"), ("paſſword: hunter22", "hunter22")):
        value = {"content": text}
        assert secret not in str(redact_value(value))
        assert may_hold_secret(dumps(value)), text
        assert secret not in dumps(value, None, redact_value)


def test_the_store_writes_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = Store(path)
    rows = [tg.Run(id=f"r{i}", graph="g", input={"q": text, "nested": {"note": "see\n" + text}}, output={"api_key": "v" * 9},
                   error=text) for i, (_, text, _) in enumerate(SECRETS)]
    store.write(runs=rows)
    store.close()
    conn = sqlite3.connect(path)
    raw = "\n".join(str(row) for row in conn.execute("SELECT * FROM runs"))
    conn.close()
    for label, _, secret in SECRETS:
        assert secret not in raw, label
    assert "v" * 9 not in raw
    back = {r.id: r for r in Store(path).runs()}
    assert back["r0"].output == {"api_key": REDACTED} and back["r0"].input["q"] == "postgres://bob:[REDACTED]@db.example.com:5432/app"


def test_a_message_in_many_rows_of_a_batch_is_redacted_in_each(tmp_path: Path) -> None:
    """A batch pre-checks each message once and the rest of a value (its keys and strings) apart: a secret in
    a message shared by several rows, or beside clean shared messages, is redacted in every row."""
    from langchain_core.messages import AIMessage, HumanMessage

    path = tmp_path / "runs.db"
    store = Store(path)
    clean = HumanMessage("what is 2 + 2?")
    for label, text, _ in SECRETS:
        leaky = AIMessage(f"use {text} here")
        run_id = f"r-{label}"
        store.write(
            runs=[tg.Run(id=run_id, graph="g", output={"messages": [clean, leaky]})],
            steps=[tg.Step(run_id=run_id, seq=0, node="agent", update={"messages": [leaky]}, action={"messages": [leaky]}),
                   tg.Step(run_id=run_id, seq=1, node="tools", update={"messages": [clean], "note": f"see {text}"}),
                   tg.Step(run_id=run_id, seq=2, node="tools", update={"messages": [clean], "client_secret": 1234567}),
                   tg.Step(run_id=run_id, seq=3, node="tools", update={"api_key": {"messages": [clean]}})],
            model_calls=[tg.ModelCall(run_id=run_id, seq=0, messages=[clean], response=leaky),
                         tg.ModelCall(run_id=run_id, seq=1, messages=[clean, leaky], response=clean)],
        )
    store.close()
    conn = sqlite3.connect(path)
    raw = "\n".join(str(row) for table in ("runs", "steps", "model_calls") for row in conn.execute(f"SELECT * FROM {table}"))
    conn.close()
    for label, _, secret in SECRETS:
        assert secret not in raw, label
    assert "1234567" not in raw and "what is 2 + 2?" in raw
    back = Store(path).steps(f"r-{SECRETS[0][0]}")
    assert back[3].update == {"api_key": REDACTED} and back[2].update["client_secret"] == REDACTED


def _best_time(fn: Any, arg: Any, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best


# texts that made the old patterns retry at every character (a lazy name prefix, unterminated blocks)
ADVERSARIAL = {
    "one long word": "a" * 2_000,
    "name-like words": "x_api_key_ " * 200,
    "many separators": "a=b:c=" * 300,
    "unterminated pem": ("-----BEGIN RSA " + "PRIVATE KEY-----\n") * 60,
    "urls without @": "http://host:port/" * 120,
    "token-ish": ("sk-" + "a" * 15 + " ") * 100,
    "prose": "You are in a kitchen; the fridge is closed. " * 45,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_redaction_time_is_linear(name: str) -> None:
    """10x the text takes about 10x the time (a quadratic pattern takes 100x): the ratio, best of 5,
    stays far below 100 even on a loaded machine."""
    small = ADVERSARIAL[name]
    large = small * 10
    for fn, wrap in ((redact_secrets, _same), (_fresh_walk, _same), (may_hold_secret, _as_json)):
        ratio = _best_time(fn, wrap(large)) / max(_best_time(fn, wrap(small)), 1e-6)
        assert ratio < 30, (name, fn.__name__, ratio)


def _same(text: str) -> str:
    return text


def _as_json(text: str) -> str:
    return dumps({"content": text})


def _fresh_walk(text: str) -> Any:
    """The walk caches texts it has seen: give each call a new one."""
    return redact_value({"content": text + str(time.perf_counter_ns())})
