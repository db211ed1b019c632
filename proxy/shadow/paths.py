"""JSONPath-like paths: the field keys results are counted under, and the ignore/unordered rules.

A concrete location inside a JSON document is a tuple of keys and indices, e.g.
`("items", 3, "price")`. Its *field key* generalises indices to `[*]` (`$.items[*].price`) and
id-like object keys (digits, UUIDs, long hex, as in route templates) to `*`
(`{"stock": {"17": …}}` -> `$.stock.*`), so counts aggregate per field, never per array
position or per id, and the number of field keys stays bounded.

Patterns understood (a practical subset of JSONPath):
`$.a.b`, `$['a b']`, `$..name` (any depth), `$.items[*].price`, `$.items[0]`, `$.*`.
As in JSONPath, `[*]` and `.*` both mean every child, of an array or of an object.
A pattern matches a location exactly; callers that ignore a subtree stop descending once a
location matches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Union

from proxy.rules.paths import looks_like_id

Component = Union[str, int]
Location = tuple[Component, ...]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_DESCEND = ("descend",)
_ANY = ("any",)
_TOKEN = re.compile(
    r"""\.\.(?=[A-Za-z_*\[])        # recursive descent
      | \.(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
      | \.\*
      | \[\*\]
      | \[(?P<index>\d+)\]
      | \[(?P<q>['"])(?P<quoted>.*?)(?P=q)\]
    """, re.VERBOSE)


def field_key(location: Iterable[Component]) -> str:
    """`("items", 3, "price")` -> `$.items[*].price`; `("stock", "17")` -> `$.stock.*`."""
    parts = ["$"]
    for comp in location:
        if isinstance(comp, int):
            parts.append("[*]")
        elif looks_like_id(comp):
            parts.append(".*")
        elif _IDENT.fullmatch(comp):
            parts.append("." + comp)
        else:
            parts.append("['" + comp.replace("'", "\\'") + "']")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A compiled pattern; build with `compile_path`."""
    text: str
    tokens: tuple[tuple, ...]

    def matches(self, location: Location) -> bool:
        return _match(self.tokens, 0, location, 0)


def compile_path(text: str) -> PathPattern:
    """Compile a pattern, or raise ValueError saying where it is malformed."""
    if not text.startswith("$"):
        raise ValueError(f"path {text!r} must start with '$' (e.g. $.items[*].price)")
    tokens: list[tuple] = []
    pos = 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"path {text!r}: cannot read from position {pos} ({text[pos:]!r})")
        tok = m.group(0)
        if tok == "..":
            tokens.append(_DESCEND)
            # `..name` / `..*`: the name follows without its own dot.
            rest = _IDENT.match(text, m.end())
            if rest:
                tokens.append(("key", rest.group(0)))
                pos = rest.end()
                continue
            if text.startswith("*", m.end()):
                tokens.append(_ANY)
                pos = m.end() + 1
                continue
        elif m.group("name") is not None:
            tokens.append(("key", m.group("name")))
        elif m.group("index") is not None:
            tokens.append(("index", int(m.group("index"))))
        elif m.group("quoted") is not None:
            tokens.append(("key", m.group("quoted")))
        else:  # .* or [*]
            tokens.append(_ANY)
        pos = m.end()
    if tokens and tokens[-1] == _DESCEND:
        raise ValueError(f"path {text!r} must not end with '..'")
    return PathPattern(text, tuple(tokens))


@lru_cache(maxsize=256)
def compile_paths(texts: tuple[str, ...]) -> tuple[PathPattern, ...]:
    """Compile a settings tuple once (settings are frozen, so the cache key is stable)."""
    return tuple(compile_path(t) for t in texts)


def any_matches(patterns: tuple[PathPattern, ...], location: Location) -> bool:
    return any(p.matches(location) for p in patterns)


def _match(tokens: tuple[tuple, ...], ti: int, loc: Location, li: int) -> bool:
    if ti == len(tokens):
        return li == len(loc)
    tok = tokens[ti]
    if tok is _DESCEND or tok == _DESCEND:
        return any(_match(tokens, ti + 1, loc, k) for k in range(li, len(loc) + 1))
    if li == len(loc):
        return False
    comp = loc[li]
    if tok == _ANY:
        ok = True
    elif tok[0] == "key":
        ok = isinstance(comp, str) and comp == tok[1]
    else:
        ok = isinstance(comp, int) and comp == tok[1]
    return ok and _match(tokens, ti + 1, loc, li + 1)
