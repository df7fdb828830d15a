"""Secrets stay out of the store: the default redaction applied to everything trajgraph writes.

A store is shared, exported (TRL datasets, OpenTelemetry spans) and sent to other
people, so credentials must never reach it. Two layers:

- a model call's parameters are filtered where they are captured: any parameter
  whose name says credential (`api_key`, `*_token`, `authorization`, ...) is
  dropped, whatever its value (trajgraph/recording/_callbacks.py);
- everything the store writes passes through the store's redaction
  (`Store(path, redact=...)`, `record(..., redact=...)`). The default,
  `redact_secrets`, replaces with `[REDACTED]`:
  - the value of any key named like a credential (`api_key`, `x-api-key`,
    `aws_secret_access_key`, `password`, `refresh_token`, `SECRET_KEY`, `cookie`, ...),
    in JSON documents and in `name=value` / `name: value` / `"name": "value"` text
    (so `?password=...` in a query string too);
  - the credentials of `Bearer ...` / `Basic ...` authorization headers;
  - the password of a URL (`scheme://user:pass@host`);
  - PEM private-key blocks, JWTs (`eyJ...` header, three base64url segments),
    an AWS secret key next to its `AKIA`/`ASIA` id;
  - well-known key formats: OpenAI/Anthropic `sk-...`, AWS `AKIA...`/`ASIA...`,
    GitHub `ghp_...`/`github_pat_...`, GitLab `glpat-...`, Slack `xox?-...` and
    webhooks, Google `AIza...`/`ya29.`/`GOCSPX-`, Hugging Face `hf_...`, Stripe
    `sk_live_`/`rk_live_` (and test keys), npm `npm_...`, PyPI `pypi-...`,
    SendGrid `SG.`, Databricks `dapi...`, DigitalOcean `dop_v1_...`, Shopify `shpat_...`.

Speed matters: this runs on every row the recorder writes, so every pattern is linear
(each branch starts at a rare character, every repeat is bounded or cannot rescan) and
JSON columns are redacted as values, not as text: `may_hold_secret` first tests the
encoded JSON (a loosened superset of every rule, in C: one scan for the token anchors,
substring tests for the words every credential name holds; the store's batches test each
message once, trajgraph/store/rows.py); only when it fires is the
value walked (`redact_value`: keys by a cached suffix lookup, strings by the patterns
above, a cache for texts that repeat) and encoded again. `redact_secrets(text)` on
plain or JSON text uses the same patterns.

A custom `redact(text) -> text` receives JSON text for JSON columns and must keep
it valid JSON (replace inside strings); `redact=None` turns redaction off.
Exports read what the store holds, so they carry only redacted values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

REDACTED = "[REDACTED]"

# a key or parameter is a credential when its name, lowercased with "-", "." and " " read as "_",
# ends with one of these (so openai_api_key, x-api-key, AWS_SECRET_ACCESS_KEY, X-Auth-Token)
_SUFFIXES = tuple(sorted({
    "api_key", "apikey", "secret", "secret_key", "secretkey", "password", "passwd", "passphrase",
    "credential", "credentials", "authorization", "private_key", "privatekey", "signing_key",
    "encryption_key", "master_key", "account_key", "accountkey", "cookie", "set_cookie",
    *(f"access{sep}key{tail}" for sep in ("_", "") for tail in ("", "_id", "id")),
    *(f"{kind}{sep}token" for kind in ("access", "refresh", "auth", "id", "session", "bearer", "api", "private", "sas")
      for sep in ("_", "")),
}))
_NORMALISE = str.maketrans({"-": "_", ".": "_", " ": "_"})
_NAME_CACHE: dict[str, bool] = {}


def is_secret_name(name: str) -> bool:
    """A parameter or key named like a credential (`api_key`, `aws_secret_access_key`, `auth_token`)."""
    found = _NAME_CACHE.get(name)
    if found is None:
        found = name.lower().translate(_NORMALISE).endswith(_SUFFIXES)
        if len(name) <= 256:
            if len(_NAME_CACHE) > 20_000:
                _NAME_CACHE.clear()
            _NAME_CACHE[name] = found
    return found


def _trie(words: list[str]) -> str:
    """A regex matching any of `words`, factored by common prefixes (each step then tests one character)."""
    heads: dict[str, list[str]] = {}
    for word in words:
        heads.setdefault(word[:1], []).append(word[1:])
    alternatives = []
    for head, tails in sorted(heads.items()):
        if not head:
            continue
        char = "[-_. ]" if head == "_" else re.escape(head)
        rest = _trie([t for t in tails if t])
        optional = "" in tails
        alternatives.append(char + (f"(?:{rest})?" if optional and rest else rest))
    if not alternatives:
        return ""
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


# Two patterns, each scanned by the regex engine's fast loop: every branch starts with one literal
# character from a small set that ordinary text rarely holds, so the engine only stops there, and
# every repeat is bounded or over a class its follower cannot start (no rescanning): linear time.
#
# Credential-named pairs (`password=...`, `"api_key": "..."`, `SECRET_KEY: ...`) are found on the
# REVERSED text, where each starts at its separator: "=" or ":", then the name's suffix backwards.
_TRIE_REVERSED = _trie(sorted(w[::-1] for w in _SUFFIXES))
# (a quote closing the name, perhaps escaped: "name": and \"name\": in JSON inside a string)
_PAIRS_REVERSED = re.compile(r"""[=:][ \t]{0,8}(?:(?P<nq>["'])\\{0,16})?(?i:""" + _TRIE_REVERSED + ")")
# Everything else starts at a rare character: "://", "-----BEGIN", the "-", "_" or "." after a
# token's prefix (checked behind), the "A" of AKIA/ASIA/AIza, the "J" of a JWT's eyJ, the "b" of Bearer.
_AFTER = r"(?:[A-Za-z0-9_-]{%d,})\b"
_FORWARD = re.compile("|".join((
    r"://(?=[^\s:/@?#]{0,256}:(?P<pw>[^\s@/?#]{1,256})@)",  # scheme://user:PASSWORD@host
    # a PEM private key: the header, its body (up to the END line, or the end of the text), the footer
    r"-----BEGIN[A-Z0-9 ]{0,32} PRIVATE KEY-----(?:[^-]|-(?!----END))*(?:-----END[A-Z0-9 ]{0,32} PRIVATE KEY-----)?",
    r"-(?<=\bsk-)(?:ant-|proj-)?" + _AFTER % 16,  # OpenAI, Anthropic
    r"-(?:(?<=\bglpat-)|(?<=\bgldt-)|(?<=\bglrt-)|(?<=\bglptt-))" + _AFTER % 20,  # GitLab
    r"-(?<=\bxox[abeoprs]-)[A-Za-z0-9-]{10,}|-(?<=\bxapp-)[0-9]-[A-Za-z0-9-]{10,}",  # Slack
    r"-(?<=\bpypi-)AgEIcHlwaS5vcmc" + _AFTER % 50,  # PyPI
    r"-(?<=\bGOCSPX-)" + _AFTER % 20,  # Google OAuth client secret
    r"_(?<=\b[sr]k_)(?:live|test|prod)_[A-Za-z0-9]{10,}",  # Stripe
    r"_(?<=\bgh[pousr]_)[A-Za-z0-9]{30,}|_(?<=\bgithub_)pat_[A-Za-z0-9_]{30,}",  # GitHub
    r"_(?<=\bhf_)[A-Za-z0-9]{30,}",  # Hugging Face
    r"_(?<=\bnpm_)[A-Za-z0-9]{36}\b",  # npm
    r"_(?<=\bdo[opr]_)v1_[a-f0-9]{64}",  # DigitalOcean
    r"_(?:(?<=\bshpat_)|(?<=\bshpca_)|(?<=\bshppa_)|(?<=\bshpss_))[a-fA-F0-9]{32}",  # Shopify
    r"\.(?<=\bSG\.)[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",  # SendGrid
    r"\.(?<=\bya29\.)" + _AFTER % 20,  # Google OAuth access token
    r"\.(?<=\bhooks\.)slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{20,}",  # Slack webhook
    # an AWS key id, and the 40-character secret key written next to it (a separator, perhaps a short label)
    r"A(?<=\bA)(?:(?:KIA|SIA)[A-Z0-9]{16}\b(?:[^A-Za-z0-9/+]{1,8}(?:[A-Za-z_]{1,40}[^A-Za-z0-9/+]{1,8})?"
    r"(?P<awssecret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+]))?|Iza[0-9A-Za-z_-]{35})",  # ... and Google API keys
    r"J(?<=\beyJ)[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",  # a signed JWT
    r"b(?<=\bb)(?i:earer|asic)\s{1,8}(?P<cred>[A-Za-z0-9._~+/=-]{8,})",  # Authorization: Bearer/Basic ...
    r"B(?<=\bB)(?i:earer|asic)\s{1,8}(?P<cred2>[A-Za-z0-9._~+/=-]{8,})",
)))
# The pre-check for JSON text (what the store writes): True whenever walking the decoded value could
# redact something. It is the anchors above, loosened to a superset in JSON's escaped form (no \b, as
# an escaped "\n" puts a letter before a token; escaped tabs and quotes around a name; any URL with
# "@"), and written for the REVERSED text so that one scan covers the pairs and the tokens alike:
# a forward "sk-" is a reversed "-ks", anchored at the "-".
_PREFIXES = {  # the character a token's prefix ends with -> the prefixes, as regex units
    "-": [["s", "k"], list("glpat"), list("gldt"), list("glrt"), list("glptt"), list("xapp"), list("pypi"), list("GOCSPX"),
          ["x", "o", "x", "[abeoprs]"]],
    "_": [["[sr]", "k"], ["g", "h", "[pousr]"], list("github"), list("hf"), list("npm"), ["d", "o", "[opr]"], list("shpat"),
          list("shpca"), list("shppa"), list("shpss")],
    r"\.": [list("SG"), list("ya29"), list("hooks")],
}
_JSON_PAIRS = (
    r"""=[ \tt\\"']{0,32}(?i:""" + _TRIE_REVERSED + ")",  # name = / "name": / \"name\"= / name\t=
    r""":[ \tt\\"']{0,32}(?i:""" + _TRIE_REVERSED + ")",
)
_JSON_TOKENS = (
    r"@[^\s/@?#]{0,3100}//:",  # scheme://...@
    "-----BEGIN"[::-1],
    *(anchor + "(?:" + "|".join("".join(reversed(units)) for units in prefixes) + ")" for anchor, prefixes in _PREFIXES.items()),
    r"A(?:IKA|ISA)",  # AKIA, ASIA
    r"I(?<=azI)A",  # AIza
    r"Jye",  # eyJ
    r"b(?:(?<=[\s\\](?i:reraeb))|(?<=[\s\\](?i:cisab)))",  # bearer, basic and a space (or an escape)
    r"B(?:(?<=[\s\\](?i:reraeb))|(?<=[\s\\](?i:cisab)))",
)
_JSON_REVERSED = re.compile("|".join((*_JSON_PAIRS, *_JSON_TOKENS)))
# For ASCII text (nearly all text) the same test in two parts. The name patterns stop at every ":" of
# the JSON (each key) and cost most of the combined scan; instead, every credential name (_SUFFIXES,
# any separator) holds one of these words, and str's substring search finds them in the lowercased
# text. "token" counts only when no "s" follows: no name ends "tokens" (usage metadata's input_tokens).
# (Eight substring tests for the literal anchors instead of the token scan measured slower: 254 vs 217 µs
# for a recorded run's 45 texts.)
_JSON_TOKENS_REVERSED = re.compile("|".join(_JSON_TOKENS))
_NAME_WORDS = ("key", "secret", "passw", "passphrase", "credential", "authorization", "cookie")
_TOKEN_WORD = re.compile("token(?!s)")


def may_hold_secret(json_text: str) -> bool:
    """Whether redacting the value behind this JSON text could change anything (False: write it as it is).
    Linear and cheap: one scan for tokens, in which the regex engine's fast loop stops only at a few rare
    characters, and substring tests for credential names."""
    reversed_text = json_text[::-1]
    if not json_text.isascii():  # the patterns' case folding reaches letters lower() does not ("ı" for "i")
        return _JSON_REVERSED.search(reversed_text) is not None
    if _JSON_TOKENS_REVERSED.search(reversed_text) is not None:
        return True
    low = json_text.lower()
    for word in _NAME_WORDS:
        if word in low:
            return True
    return _TOKEN_WORD.search(low) is not None


# the value after a credential name: to the closing quote (an escaped one: to a backslash and quote),
# or, unquoted, to a space or delimiter
_VALUE = {
    '"': re.compile(r'(?:[^"\\\n]|\\.)+'),
    "'": re.compile(r"(?:[^'\\\n]|\\.)+"),
    "\\": re.compile(r"""(?:[^"'\\\n]|\\(?!\\{0,16}["']))+"""),
    "": re.compile(r"""(?!(?i:bearer|basic)\s)[^\s"'\\,;&}\]]+"""),
}
_OPENING = re.compile(r"""[ \t]{0,8}(\\{0,16})(["']?)""")
_MIN_LEN = 6  # the shortest text any branch can match ("://:p@" is six characters)


def _forward_spans(text: str) -> list[tuple[int, int, str]]:
    spans = []
    for m in _FORWARD.finditer(text):
        if m["pw"] is not None:
            spans.append((*m.span("pw"), REDACTED))
        elif m["cred"] is not None or m["cred2"] is not None:
            spans.append((*m.span("cred" if m["cred"] is not None else "cred2"), REDACTED))
        elif m["awssecret"] is not None:
            spans += ((m.start(), m.start() + 20, REDACTED), (*m.span("awssecret"), REDACTED))
        else:  # a token: its prefix is the letters and digits before the character the match starts at
            start = m.start()
            while start > 0 and text[start - 1].isalnum():
                start -= 1
            spans.append((start, m.end(), REDACTED))
    return spans


def _pair_spans(text: str) -> list[tuple[int, int, str]]:
    spans = []
    n = len(text)
    for m in _PAIRS_REVERSED.finditer(text[::-1]):
        opening = _OPENING.match(text, n - m.start())  # after the separator; always matches
        assert opening is not None
        slashes, quote = opening.groups()
        value = _VALUE["\\" if slashes and quote else quote].match(text, opening.end())
        if value is None or (not quote and value[0] in ("null", "true", "false")):
            continue
        # a quoted name's bare value (a number in JSON) becomes a quoted string: JSON text stays JSON
        spans.append((*value.span(), f'"{REDACTED}"' if m["nq"] and not quote else REDACTED))
    return spans


def redact_secrets(text: str) -> str:
    """The default redaction of one text, plain or JSON (see the module docstring); JSON text stays valid JSON."""
    if len(text) < _MIN_LEN:
        return text
    spans = _forward_spans(text)
    if "=" in text or ":" in text:
        spans += _pair_spans(text)
    if not spans:
        return text
    spans.sort()
    parts: list[str] = []
    pos = 0  # text before pos is written (or redacted)
    for start, end, replacement in spans:
        if start < pos:  # overlaps the last redaction: it reaches as far as either
            pos = max(pos, end)
            continue
        parts += (text[pos:start], replacement)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


_TEXT_CACHE: dict[str, str] = {}  # recorded rows repeat their texts (a conversation in every later call)
_CACHE_MAX_ITEMS, _CACHE_MAX_LEN = 8192, 8192


def _redact_str(text: str) -> str:
    if len(text) < _MIN_LEN:
        return text
    if len(text) > _CACHE_MAX_LEN:
        return redact_secrets(text)
    done = _TEXT_CACHE.get(text)
    if done is None:
        done = redact_secrets(text)
        if len(_TEXT_CACHE) >= _CACHE_MAX_ITEMS:
            _TEXT_CACHE.clear()
        _TEXT_CACHE[text] = done
    return done


def redact_value(value: Any) -> Any:
    """The default redaction of a JSON value (dicts, lists, strings, numbers): a new value where
    something was redacted, the same object where nothing was. Under a credential-named key every
    value but null, booleans and "" becomes "[REDACTED]"; every string (keys too) runs through the patterns."""
    kind = type(value)
    if kind is str:
        return _redact_str(value)
    if kind is dict:
        return _redact_dict(value)
    if kind is list:
        return _redact_list(value)
    return value


def _redact_dict(value: dict[Any, Any]) -> dict[Any, Any]:
    # the hot loop of every write: strings are handled inline (a cache lookup), containers recurse
    out: dict[Any, Any] | None = None
    names, texts = _NAME_CACHE, _TEXT_CACHE
    for key, item in value.items():
        new_key = key
        if type(key) is str:
            secret = names.get(key)
            if secret is None:
                secret = is_secret_name(key)
            if len(key) >= _MIN_LEN:
                new_key = texts.get(key) or _redact_str(key)
        else:
            secret = False
        kind = type(item)
        new: Any
        if secret and item is not None and kind is not bool and item != "":
            new = REDACTED
        elif kind is str:
            new = item if len(item) < _MIN_LEN else (texts.get(item) or _redact_str(item))
        elif kind is dict:
            new = _redact_dict(item)
        elif kind is list:
            new = _redact_list(item)
        else:
            new = item
        if out is None:
            if new is item and new_key is key:
                continue
            out = {}
            for k, v in value.items():  # the unchanged ones before this key
                if k is key:
                    break
                out[k] = v
        out[new_key] = new
    return value if out is None else out


def _redact_list(value: list[Any]) -> list[Any]:
    items: list[Any] | None = None
    texts = _TEXT_CACHE
    for i, item in enumerate(value):
        kind = type(item)
        new: Any
        if kind is str:
            new = item if len(item) < _MIN_LEN else (texts.get(item) or _redact_str(item))
        elif kind is dict:
            new = _redact_dict(item)
        elif kind is list:
            new = _redact_list(item)
        else:
            new = item
        if items is None:
            if new is item:
                continue
            items = value[:i]
        items.append(new)
    return value if items is None else items


Redactor = Callable[[str], str]

__all__ = ["REDACTED", "Redactor", "redact_secrets", "redact_value", "may_hold_secret", "is_secret_name"]
