"""Redaction applied before anything reaches the results store (samples, diffs, curl lines).

Removes: credential headers (Authorization, Cookie, Set-Cookie, and any whose name looks secret,
proxy.secret_names), query parameters whose names look secret, configured sensitive fields
anywhere in JSON (and `name=value` in form bodies and query strings), and card-like digit runs
(13–19 digits, spaces or dashes allowed, Luhn-valid) in any text.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Iterable

from proxy.secret_names import looks_secret

REDACTED = "[REDACTED]"
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-strangler-override-secret",
})
_CARDLIKE = re.compile(r"(?<![0-9A-Za-z])\d(?:[ -]?\d){12,18}(?![0-9A-Za-z])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact_text(text: str, sensitive: Iterable[str] = ()) -> str:
    """Card-like numbers, plus `name=value` / `"name": value` for sensitive names."""
    for pattern, replacement in _name_patterns(frozenset(sensitive)):
        text = pattern.sub(replacement, text)
    return _CARDLIKE.sub(_card, text)


@lru_cache(maxsize=64)
def _name_patterns(sensitive: frozenset[str]) -> tuple[tuple[re.Pattern, str], ...]:
    if not sensitive:
        return ()
    alt = "|".join(re.escape(n) for n in sorted(sensitive))
    return ((re.compile(rf'(?i)("(?:{alt})"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}}\]\s]+)'),
             rf'\1"{REDACTED}"'),
            (re.compile(rf"(?i)(?<![\w-])((?:{alt})=)[^&\s;]*"), rf"\1{REDACTED}"))


def _card(match: re.Match) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return REDACTED if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def redact_json(value: Any, sensitive: frozenset[str]) -> Any:
    """A copy of a parsed JSON value with sensitive keys' values and card numbers replaced."""
    if isinstance(value, dict):
        return {k: (REDACTED if k.lower() in sensitive else redact_json(v, sensitive))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, sensitive) for v in value]
    if isinstance(value, str):
        return redact_text(value, sensitive)
    if isinstance(value, int) and not isinstance(value, bool) and 13 <= len(str(abs(value))) <= 19 \
            and luhn_valid(str(abs(value))):
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
    or are configured sensitive replaced; the rest as `redact_text` leaves it."""
    path, mark, query = target.partition("?")
    if not mark:
        return redact_text(target, sensitive)
    params = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        params.append(f"{name}={REDACTED}" if eq and (looks_secret(name)
                                                      or name.lower() in sensitive) else item)
    return redact_text(f"{path}?{'&'.join(params)}", sensitive)


def redact_field(path: str, value: Any, sensitive: frozenset[str]) -> Any:
    """A diff's value: wholly redacted when the field itself is sensitive (a sensitive JSON key,
    or a compared credential header such as `header:set-cookie`)."""
    if path.startswith("header:") and secret_header(path[len("header:"):]):
        return REDACTED
    last = re.split(r"[.\[\]']+", path.rstrip("]'"))[-1].lower()
    if last in sensitive:
        return REDACTED
    return redact_json(value, sensitive)
