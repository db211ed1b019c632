"""Path helpers shared by the validator, the index and route naming.

Paths are matched after `normalise`, split on "/". A template variable is a whole segment,
`{name}`; a prefix matches itself and anything below it (segment boundary: `/api/products`
matches `/api/products/7` but not `/api/productsX`).
"""
from __future__ import annotations

import re
from urllib.parse import unquote

_VARIABLE = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_LONG_HEX = re.compile(r"^(?=.*[0-9])[0-9a-fA-F]{16,}$")
_SPLIT_DIGITS = re.compile(r"^\d+(?:[ .+_-]\d+)+$")             # 4111-1111-1111-1111, 12.5
_LONG_TOKEN = re.compile(r"^(?=.*[0-9])[A-Za-z0-9_.~-]{16,}$")   # order-2026-000123, a key

_ENCODED_SLASH = re.compile("%2[fF]")

Segment = str | None  # None: a template variable (any non-empty segment)


def normalise(path: str) -> str:
    """The path as a backend's router sees it, so a request cannot dodge its rule by spelling:
    percent-escapes decoded (except %2F, which stays inside its segment, as aiohttp routes it)
    and `.`/`..` segments resolved (RFC 3986 remove_dot_segments). Used for matching only; the
    request is forwarded as received."""
    if "%" in path:
        path = "%2F".join(unquote(part) for part in _ENCODED_SLASH.split(path))
    if "/." not in path:
        return path
    out: list[str] = []
    parts = path.split("/")[1:]
    for seg in parts:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if parts and parts[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


def segments(path: str) -> list[str]:
    """`/api/products/7` -> ["api", "products", "7"]; `/` -> []."""
    return path[1:].split("/") if len(path) > 1 else []


def prefix_segments(prefix: str) -> list[str]:
    """A prefix's segments; a trailing slash is ignored (`/api/` is the same as `/api`)."""
    return segments(prefix.rstrip("/") or "/")


def template_problem(template: str) -> str | None:
    """Why a template is malformed, or None."""
    for seg in segments(template):
        if ("{" in seg or "}" in seg) and not _VARIABLE.match(seg):
            return (f"segment {seg!r} is not well-formed: a variable is a whole segment "
                    "written {name} (letters, digits, _)")
        if seg == "":
            return "empty segment (`//` or a trailing `/`)"
    names = [s for s in segments(template) if _VARIABLE.match(s)]
    if len(names) != len(set(names)):
        return "a variable name is used twice"
    return None


def template_segments(template: str) -> list[Segment]:
    return [None if _VARIABLE.match(s) else s for s in segments(template)]


def looks_like_id(seg: str) -> bool:
    return (seg.isdigit() or bool(_UUID.match(seg)) or bool(_LONG_HEX.match(seg))
            or bool(_SPLIT_DIGITS.match(seg)) or bool(_LONG_TOKEN.match(seg)))


def learned_route(path: str) -> str:
    """A route template for grouping: id-like segments become {id}: digits (also in groups,
    4111-1111), UUIDs, long hex, and long tokens with a digit in them (order-2026-000123)."""
    if not any(c.isdigit() for c in path):
        return path
    return "/".join("{id}" if seg and looks_like_id(seg) else seg for seg in path.split("/"))
