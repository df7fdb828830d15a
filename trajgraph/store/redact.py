"""Secrets stay out of the store: the default redaction applied to everything trajgraph writes.

A store is shared, exported (TRL datasets, OpenTelemetry spans) and sent to other
people, so credentials must never reach it. Two layers:

- a model call's parameters are filtered where they are captured: any parameter
  whose name says credential (`api_key`, `*_token`, `authorization`, ...) is
  dropped, whatever its value (trajgraph/recording/_callbacks.py);
- every text the store writes passes through the store's `redact` function
  (`Store(path, redact=...)`, `record(..., redact=...)`), JSON documents as their
  JSON text and plain text columns (errors, observations) as they are. The
  default, `redact_secrets`, replaces with `[REDACTED]`:
  the value of any JSON key named like a credential, `name=value` pairs of such
  names in plain text, `Bearer ...` tokens, and well-known key formats
  (OpenAI/Anthropic `sk-...`, AWS `AKIA...`/`ASIA...`, GitHub `ghp_...`,
  Slack `xox?-...`, Google `AIza...`, Hugging Face `hf_...`), and the credentials
  of `Bearer ...`/`Basic ...` authorization headers.

A custom `redact(text) -> text` receives JSON text for JSON columns and must keep
it valid JSON (replace inside strings); `redact=None` turns redaction off.
Exports read what the store holds, so they carry only redacted values.
"""

from __future__ import annotations

import re
from collections.abc import Callable

REDACTED = "[REDACTED]"

# key names that say "credential"; the prefix allows openai_api_key, x-api-key, aws_secret_access_key
_NAMES = (
    r"[A-Za-z0-9_.-]*?(?:api[_-]?key|apikey|secret|password|passwd|passphrase|credentials?|authorization"
    r"|private[_-]?key|access[_-]?key(?:[_-]?id)?|(?:access|refresh|auth|id|session|bearer|api)[_-]?token)"
)
SECRET_NAME = re.compile(rf"^{_NAMES}$", re.IGNORECASE)
_JSON_PAIR = re.compile(rf'("{_NAMES}"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_TEXT_PAIR = re.compile(rf"\b({_NAMES})(\s*[=:]\s*)(?!(?:Bearer|Basic)\s)[^\s\"'\\,;&]+", re.IGNORECASE)
_TOKENS = re.compile(
    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|(?:AKIA|ASIA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,})\b"
)
_BEARER = re.compile(r"\b((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)

Redactor = Callable[[str], str]


def redact_secrets(text: str) -> str:
    """The default redaction (see the module docstring); JSON text stays valid JSON."""
    if _JSON_PAIR.search(text):
        text = _JSON_PAIR.sub(rf'\1"{REDACTED}"', text)
    if _TEXT_PAIR.search(text):
        text = _TEXT_PAIR.sub(rf"\1\2{REDACTED}", text)
    if _TOKENS.search(text):
        text = _TOKENS.sub(REDACTED, text)
    if _BEARER.search(text):
        text = _BEARER.sub(rf"\1{REDACTED}", text)
    return text


def is_secret_name(name: str) -> bool:
    """A parameter or key named like a credential (`api_key`, `aws_secret_access_key`, `auth_token`)."""
    return bool(SECRET_NAME.match(name))


__all__ = ["REDACTED", "Redactor", "redact_secrets", "is_secret_name"]
