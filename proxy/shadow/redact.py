"""Redaction applied before anything reaches the results store (samples, diffs, curl lines).

Removes: credential headers (Authorization, Cookie, Set-Cookie, and any whose name looks secret),
the values of JSON keys, form fields and query parameters whose names look secret or are
configured sensitive, and card-like numbers in any text. What "looks secret" and "card-like"
mean is proxy.sensitive's rule, shared with the access log.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Iterable

from proxy.sensitive import is_card_number, looks_secret, redact_cards, redact_query

REDACTED = "[REDACTED]"
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-strangler-override-secret",
})
# `name=value` (form bodies, query strings, links in HTML) and `"name": value` (JSON cut short)
_PAIR = re.compile(r"(?<![\w%.-])([A-Za-z0-9_.%\[\]-]+)=([^&\s;\"'<>]*)")
_JSON_PAIR = re.compile(r'("((?:[^"\\]|\\.){1,200})"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)')


def redact_text(text: str, sensitive: Iterable[str] = ()) -> str:
    """Card-like numbers, plus `name=value` / `"name": value` for names that look secret or
    are configured sensitive."""
    wanted = _wanted(frozenset(sensitive))
    text = _PAIR.sub(lambda m: f"{m.group(1)}={REDACTED}" if wanted(m.group(1)) else m.group(0),
                     text)
    text = _JSON_PAIR.sub(lambda m: f'{m.group(1)}"{REDACTED}"' if wanted(m.group(2))
                          else m.group(0), text)
    return redact_cards(text, REDACTED)


@lru_cache(maxsize=64)
def _wanted(sensitive: frozenset[str]):
    def wanted(name: str) -> bool:
        return looks_secret(name) or name.lower() in sensitive
    return wanted


def redact_json(value: Any, sensitive: frozenset[str]) -> Any:
    """A copy of a parsed JSON value with sensitive keys' values and card numbers replaced."""
    if isinstance(value, dict):
        wanted = _wanted(sensitive)
        return {k: (REDACTED if wanted(k) else redact_json(v, sensitive))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, sensitive) for v in value]
    if isinstance(value, str):
        return redact_text(value, sensitive)
    if isinstance(value, int) and not isinstance(value, bool) and is_card_number(str(abs(value))):
        return REDACTED
    return value


def redact_body(body: bytes | str, sensitive: frozenset[str], limit: int) -> str:
    """A body as storable text: JSON structurally, other text by patterns; cut at `limit`."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except ValueError:
        text = redact_text(text, sensitive)
    else:
        text = json.dumps(redact_json(doc, sensitive), ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more chars]"


def secret_header(name: str) -> bool:
    """Credentials by name: the known ones and any whose name looks secret (X-Auth-Token)."""
    return name.lower() in SECRET_HEADERS or looks_secret(name)


def redact_headers(headers: Iterable[tuple[str, str]],
                   sensitive: frozenset[str]) -> list[tuple[str, str]]:
    return [(k, REDACTED if secret_header(k) else redact_text(v, sensitive)) for k, v in headers]


def redact_target(target: str, sensitive: frozenset[str]) -> str:
    """A request target with the values of query parameters that look secret (api_key=...)
    or are configured sensitive replaced, and card-like numbers masked in path and query."""
    path, mark, query = target.partition("?")
    path = redact_cards(path, REDACTED)
    return f"{path}?{redact_query(query, REDACTED, sensitive)}" if mark else path


def redact_field(path: str, value: Any, sensitive: frozenset[str]) -> Any:
    """A diff's value: wholly redacted when the field itself is sensitive (a sensitive JSON key,
    or a compared credential header such as `header:set-cookie`)."""
    if path.startswith("header:") and secret_header(path[len("header:"):]):
        return REDACTED
    last = re.split(r"[.\[\]']+", path.rstrip("]'"))[-1]
    if _wanted(sensitive)(last):
        return REDACTED
    return redact_json(value, sensitive)
