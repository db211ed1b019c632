"""Overlap checks: does an earlier matcher catch requests meant for a later one?

First match wins, so a later matcher that an earlier capability covers entirely never matches:
an error. A partial overlap (some requests go to the earlier capability) is a warning, and so is
a matcher made redundant by an earlier one of the same capability. Paths are compared by
segments (prefix, exact, template). Regex containment is undecidable in general, so a regex
covers only the exact paths it matches, and overlaps a prefix or template when it matches a
sample path of theirs (`{id}` -> `1`). A later regex is covered by what its literal start shows
(proxy.rules.regex_heads): `/api/products/[0-9]+` lies wholly under a prefix `/api/products`.
"""
from __future__ import annotations

from proxy.rules.matchers import PATH, PREFIX, REGEX, Matcher
from proxy.rules.merge import Located, Merged
from proxy.rules.paths import Segment, segments
from proxy.rules.regex_heads import Head, heads
from proxy.rules.problems import WARNING, Problem

COVERS, OVERLAPS = "covers", "overlaps"


class _Shape:
    """A matcher reduced to what overlap needs: segments (None = variable) and openness."""
    __slots__ = ("m", "segs", "open", "literal", "heads")

    def __init__(self, m: Matcher) -> None:
        self.m = m
        self.segs: list[Segment] = [] if m.kind == REGEX else m.segments
        self.open = m.kind == PREFIX
        self.literal = m.kind != REGEX and not self.open and None not in self.segs
        self.heads: list[Head] = heads(m.value) if m.kind == REGEX else []

    def key(self) -> tuple[str, str] | None:
        """The first two segments when both are literal, else None."""
        if len(self.segs) >= 2 and self.segs[0] is not None and self.segs[1] is not None:
            return (self.segs[0], self.segs[1])
        return None


def check_overlaps(merged: Merged, matchers: list[Matcher]) -> list[Problem]:
    located = {c.data["name"]: c for c in merged.capabilities}
    shapes = [_Shape(m) for m in matchers]
    problems: list[Problem] = []
    covered_count: dict[str, int] = {}
    # Matchers whose first two segments are literal can only meet matchers with the same two
    # literals or with fewer leading literals ("broad"): keeps big tables from going quadratic.
    seen: list[_Shape] = []
    by_key: dict[tuple[str, str], list[_Shape]] = {}
    broad: list[_Shape] = []
    for later in shapes:
        key = later.key()
        if key is None:
            earlier_ones = list(seen)
        else:
            earlier_ones = sorted(by_key.get(key, []) + broad, key=lambda s: s.m.order)
        seen.append(later)
        (by_key.setdefault(key, []) if key is not None else broad).append(later)
        covered_by = overlapped_by = None
        for earlier in earlier_ones:
            relation = _relation(earlier, later)
            if relation == COVERS:
                covered_by = earlier
                break
            if relation == OVERLAPS and overlapped_by is None \
                    and earlier.m.capability != later.m.capability:
                overlapped_by = earlier
        b = later.m
        loc = located[b.capability]
        if covered_by is not None:
            a = covered_by.m
            if a.capability == b.capability:
                problems.append(loc.problem(
                    f"match[{b.index}] ({b.describe()}) is redundant: match[{a.index}] "
                    f"({a.describe()}) already catches every request it would", "match", b.index,
                    rule=b.capability, severity=WARNING))
                continue
            covered_count[b.capability] = covered_count.get(b.capability, 0) + 1
            whole = covered_count[b.capability] == len(loc.data["match"])
            problems.append(loc.problem(
                f"match[{b.index}] ({b.describe()}) never matches: capability {a.capability!r} "
                f"match[{a.index}] ({a.describe()}) at {_where(located[a.capability], a)} comes "
                "first and catches every request it would"
                + (f", so capability {b.capability!r} never matches" if whole else "")
                + "; move this capability above it or narrow the earlier matcher",
                "match", b.index, rule=b.capability))
        elif overlapped_by is not None:
            a = overlapped_by.m
            problems.append(loc.problem(
                f"match[{b.index}] ({b.describe()}) overlaps capability {a.capability!r} "
                f"match[{a.index}] ({a.describe()}) at {_where(located[a.capability], a)}: "
                f"requests matching both go to {a.capability!r} (first match wins)",
                "match", b.index, rule=b.capability, severity=WARNING))
    return problems


def _where(loc: Located, m: Matcher) -> str:
    return f"{loc.src.file}:{loc.line('match', m.index)}"


def relation(earlier: Matcher, later: Matcher) -> str | None:
    """COVERS when every request `later` matches is taken by `earlier`, OVERLAPS when some may
    be, None when none can be (or, for two regexes, when it cannot be told)."""
    return _relation(_Shape(earlier), _Shape(later))


def _relation(a: _Shape, b: _Shape) -> str | None:
    """Does earlier matcher `a` cover later matcher `b`, overlap it, or neither?"""
    path = _path_relation(a, b)
    if path is None:
        return None
    ma, mb = a.m.methods, b.m.methods
    if ma is not None and mb is not None and not ma & mb:
        return None
    conditions = _conditions(a.m, b.m)
    if conditions is None:
        return None
    if path == COVERS and (ma is None or (mb is not None and mb <= ma)) and conditions:
        return COVERS
    return OVERLAPS


def _conditions(a: Matcher, b: Matcher) -> bool | None:
    """None when header/query conditions make the two disjoint; else whether a's conditions
    are all present in b (so a asks nothing b does not)."""
    subset = True
    for mine, theirs in ((a.headers, b.headers), (a.query, b.query)):
        by_name = {c.name: c for c in theirs}
        for cond in mine:
            other = by_name.get(cond.name)
            if other is None:
                subset = False
            elif cond.exact is not None and other.exact is not None and cond.exact != other.exact:
                return None
            elif cond != other:
                subset = False
    return subset


def _samples(shape: _Shape) -> list[str]:
    """A few paths a non-regex matcher matches, to try a regex against."""
    base = "/" + "/".join(seg if seg is not None else "1" for seg in shape.segs)
    return [base, base.rstrip("/") + "/1"] if shape.open else [base]


def _path_relation(a: _Shape, b: _Shape) -> str | None:
    if a.m.kind == REGEX or b.m.kind == REGEX:
        if a.m.kind == REGEX and b.m.kind == PATH:
            return COVERS if a.m.regex.fullmatch(b.m.value) else None
        if a.m.kind == REGEX and b.m.kind != REGEX:
            return OVERLAPS if any(map(a.m.regex.fullmatch, _samples(b))) else None
        if b.m.kind == REGEX and a.m.kind != REGEX:
            known = _heads_relation(a, b.heads)
            if known is not None:
                return known
            return OVERLAPS if any(map(b.m.regex.fullmatch, _samples(a))) else None
        return None
    sa, sb = a.segs, b.segs
    for x, y in zip(sa, sb):
        if x is not None and y is not None and x != y:
            return None
    if a.open:
        if len(sb) < len(sa):
            return OVERLAPS if b.open else None
        covered = all(x is None or y == x for x, y in zip(sa, sb))
        return COVERS if covered else OVERLAPS
    if b.open:
        return OVERLAPS if len(sa) >= len(sb) else None
    if len(sa) != len(sb):
        return None
    return COVERS if all(x is None or y == x for x, y in zip(sa, sb)) else OVERLAPS


def _heads_relation(a: _Shape, regex_heads: list[Head]) -> str | None:
    """What a regex's literal starts show: COVERS when every alternative lies inside
    non-regex `a`, OVERLAPS when some does, None when that cannot be told this way."""
    inside = [_head_inside(a, text, exact) for text, exact in regex_heads]
    if all(inside):
        return COVERS
    return OVERLAPS if any(inside) else None


def _head_inside(a: _Shape, text: str, exact: bool) -> bool:
    """Is every path that is `text` (exact) or starts with it matched by `a`'s path part?"""
    if not exact:  # only a prefix holds open-ended paths, and only below a segment boundary
        return a.open and (not a.segs or text.startswith("/" + "/".join(a.segs) + "/"))
    if not text.startswith("/"):
        return False
    segs = segments(text)
    if len(segs) < len(a.segs) or (not a.open and len(segs) != len(a.segs)):
        return False
    return all(y == x if x is not None else y != "" for x, y in zip(a.segs, segs))
