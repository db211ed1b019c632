"""The literal text every match of a path regex starts with, so overlap checks can tell when an
earlier prefix catches all of it.

Regex containment is undecidable in general, but path regexes mostly open with literal text
(`/api/products/[0-9]+`): every path they match starts with it. It is read from the standard
library's own parser, so it is what `re` acts on, whatever escapes or groups the text uses.
"""
from __future__ import annotations

import os
import re
from re import _constants as sre
from re import _parser  # type: ignore[attr-defined]
from typing import Any

Head = tuple[str, bool]  # (text every match starts with, True when the match is exactly it)
UNKNOWN: list[Head] = [("", False)]
_LIMIT = 32  # alternatives followed; past it they fold into their common start


def heads(pattern: str) -> list[Head]:
    """One head per alternative: `/a/(b|c)/.*` -> [("/a/b/", False), ("/a/c/", False)],
    `/a/7` -> [("/a/7", True)]; UNKNOWN when nothing literal leads."""
    try:
        parsed = _parser.parse(pattern)
    except re.error:
        return UNKNOWN
    return _sequence(list(parsed), bool(parsed.state.flags & re.IGNORECASE))


def _sequence(items: list[Any], icase: bool) -> list[Head]:
    out: list[Head] = [("", True)]
    for op, av in items:
        if not any(exact for _, exact in out):
            break
        alts = _item(op, av, icase)
        out = list(dict.fromkeys(
            [(text, False) for text, exact in out if not exact]
            + [(text + more, still) for text, exact in out if exact for more, still in alts]))
        if len(out) > _LIMIT:
            return [(os.path.commonprefix([text for text, _ in out]), False)]
    return out


def _item(op: Any, av: Any, icase: bool) -> list[Head]:
    if op is sre.LITERAL:
        char = chr(av)
        # Under IGNORECASE a cased letter also matches its other case: not literal text.
        return UNKNOWN if icase and char.lower() != char.upper() else [(char, True)]
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
        return [("", True)]  # zero-width: only narrows what matches, so the heads still hold
    if op is sre.SUBPATTERN:
        _group, add, remove, body = av
        return _sequence(list(body), (icase or bool(add & re.IGNORECASE))
                         and not remove & re.IGNORECASE)
    if op is sre.ATOMIC_GROUP:
        return _sequence(list(av), icase)
    if op is sre.BRANCH:
        return [head for branch in av[1] for head in _sequence(list(branch), icase)]
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, high, body = av
        if high == 0:
            return [("", True)]
        if low == high == 1:
            return _sequence(list(body), icase)
        if low >= 1:  # the first round leads, what follows is open
            return [(text, False) for text, _ in _sequence(list(body), icase)]
    return UNKNOWN
