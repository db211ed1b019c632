"""Refuse regexes that Python's backtracking `re` can take exponential time on (ReDoS).

When a repeated part can match the same text in more than one way (`(a+)+`, `(a|aa)+`,
`(\\w+\\s?)*`), a path that almost matches makes `re` try every way: the time doubles per
character while the proxy worker serves nothing else. The test is the classical one for
exponential ambiguity (an SCC of the automaton's square holding a pair (p, p) and a pair (p, q),
or two ways around one loop; Allauzen, Mohri & Rastogi 2008) on the regex's position automaton,
built from the standard library's own parse so it judges what `re` runs. `(/[a-z]+)*` passes:
each round starts with `/`, which `[a-z]+` cannot take, so there is one way only. Atomic groups
and possessive repeats never give back what they took, so each counts as one token (their
insides are checked on their own). Counted repeats above x{16} are judged as x+ / x*, which
can only err towards refusing.
"""
from __future__ import annotations

import re
from re import _constants as sre
from re import _parser  # type: ignore[attr-defined]
from typing import Any, Callable, Iterable

_EXPAND = 16
_PROBES = "".join(map(chr, range(0x180))) + "\u00a0\u0130\u0131\u017f\u03a9\u2028\u212a\u3000"
_CATEGORIES = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D",
               sre.CATEGORY_SPACE: r"\s", sre.CATEGORY_NOT_SPACE: r"\S",
               sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W"}

ADVICE = ("can take exponential time on text that almost matches (a repeated part can match "
          "the same text in more than one way, as in (a+)+, (a|aa)+ or (\\w+\\s?)*), and the "
          "worker running it serves nothing else meanwhile; make each repetition unambiguous "
          "(e.g. (/[^/]+)* instead of (/.+)*, a+ instead of (a+)+), or atomic/possessive "
          "((?>a+)+, a++, x*+)")

Node = tuple[bool, frozenset[int], frozenset[int]]  # (matches empty, first, last positions)
_EMPTY: Node = (True, frozenset(), frozenset())


def explosive(pattern: str) -> bool:
    """True when the regex can backtrack exponentially (False for one that does not compile:
    that is reported on its own)."""
    try:
        parsed = _parser.parse(pattern)
    except re.error:
        return False
    return _Automaton().explosive(list(parsed), parsed.state.flags)


class _Automaton:
    """Glushkov positions of one regex, with follow edges counted by the ways they arise."""

    def __init__(self) -> None:
        self.tests: list[Callable[[str], bool] | None] = []  # None: an opaque token
        self.hints: list[str] = []
        self.follow: list[dict[int, int]] = []
        self.inner: list[tuple[list[Any], int]] = []  # parts checked on their own

    def explosive(self, items: list[Any], flags: int) -> bool:
        self._sequence(items, flags)
        if self._ambiguous():
            return True
        return any(_Automaton().explosive(body, fl) for body, fl in self.inner)

    # -- building ----------------------------------------------------------------------------
    def _position(self, test: Callable[[str], bool] | None, hints: str = "") -> Node:
        self.tests.append(test)
        self.hints.append(hints)
        self.follow.append({})
        p = frozenset([len(self.tests) - 1])
        return (False, p, p)

    def _link(self, last: Iterable[int], first: Iterable[int]) -> None:
        for p in last:
            for q in first:
                self.follow[p][q] = min(2, self.follow[p].get(q, 0) + 1)

    def _concat(self, a: Node, b: Node) -> Node:
        self._link(a[2], b[1])
        return (a[0] and b[0], a[1] | (b[1] if a[0] else frozenset()),
                b[2] | (a[2] if b[0] else frozenset()))

    def _sequence(self, items: list[Any], flags: int) -> Node:
        node = _EMPTY
        for op, av in items:
            node = self._concat(node, self._item(op, av, flags))
        return node

    def _item(self, op: Any, av: Any, flags: int) -> Node:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            test, hints = _char_test(op, av, flags)
            return self._position(test, hints)
        if op is sre.SUBPATTERN:
            _group, add, remove, body = av
            return self._sequence(list(body), (flags | add) & ~remove)
        if op is sre.BRANCH:
            nodes = [self._sequence(list(b), flags) for b in av[1]]
            return (any(n[0] for n in nodes), frozenset().union(*(n[1] for n in nodes)),
                    frozenset().union(*(n[2] for n in nodes)))
        if op is sre.GROUPREF_EXISTS:
            _group, yes, no = av
            return self._item(sre.BRANCH, (None, [yes, no or []]), flags)
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            return self._repeat(*av, flags)
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            if op is not sre.AT:
                self.inner.append((list(av[1]), flags))
            return _EMPTY
        if op in (sre.ATOMIC_GROUP, sre.POSSESSIVE_REPEAT):
            self.inner.append((list(av if op is sre.ATOMIC_GROUP else av[2]), flags))
        return self._position(None)  # atomic, possessive, back-reference: one opaque token

    def _repeat(self, low: int, high: int, body: Any, flags: int) -> Node:
        def copy() -> Node:
            return self._sequence(list(body), flags)

        if high == sre.MAXREPEAT or high > _EXPAND:
            node = _EMPTY
            for _ in range(min(low, _EXPAND) - 1):
                node = self._concat(node, copy())
            loop = copy()
            self._link(loop[2], loop[1])
            return self._concat(node, (loop[0] or low == 0, loop[1], loop[2]))
        tail = _EMPTY  # x{2,4} = x x (x (x)?)?: one way to match each count, as re does
        for _ in range(high - low):
            n = self._concat(copy(), tail)
            tail = (True, n[1], n[2])
        node = _EMPTY
        for _ in range(low):
            node = self._concat(node, copy())
        return self._concat(node, tail)

    # -- judging -----------------------------------------------------------------------------
    def _ambiguous(self) -> bool:
        n = len(self.tests)
        probes = _PROBES + "".join(self.hints)
        reads = [frozenset(c for c in probes if t(c)) if t is not None else None
                 for t in self.tests]

        def meet(p: int, q: int) -> bool:
            if reads[p] is None or reads[q] is None:
                return p == q
            return bool(reads[p] & reads[q])

        component = _components(range(n), lambda p: self.follow[p])
        if any(ways > 1 and component[p] == component[q]
               for p in range(n) for q, ways in self.follow[p].items()):
            return True  # two ways around one loop: (a+)+, (a*b*)*
        pairs = _components(((p, p) for p in range(n)), lambda pq: (
            (p2, q2) for p2 in self.follow[pq[0]] for q2 in self.follow[pq[1]] if meet(p2, q2)))
        diagonal = {c for (p, q), c in pairs.items() if p == q}
        return any(p != q and c in diagonal for (p, q), c in pairs.items())


def _char_test(op: Any, av: Any, flags: int) -> tuple[Callable[[str], bool], str]:
    """What one position reads, and characters worth probing it with."""
    if op is sre.LITERAL:
        test, hints = (lambda c: c == chr(av)), chr(av)
    elif op is sre.NOT_LITERAL:
        test, hints = (lambda c: c != chr(av)), chr(av)
    elif op is sre.ANY:
        test, hints = ((lambda c: True) if flags & re.DOTALL else (lambda c: c != "\n")), ""
    else:
        test, hints = _set_test(av, flags)
    if flags & re.IGNORECASE:
        plain = test
        return (lambda c: any(plain(v) for v in {c, c.lower(), c.upper(), c.swapcase()}),
                hints + hints.swapcase())
    return test, hints


def _set_test(items: list[Any], flags: int) -> tuple[Callable[[str], bool], str]:
    negate = bool(items) and items[0][0] is sre.NEGATE
    tests: list[Callable[[str], bool]] = []
    hints = ""
    for op, av in items[1:] if negate else items:
        if op is sre.LITERAL:
            tests.append(lambda c, v=chr(av): c == v)
            hints += chr(av)
        elif op is sre.RANGE:
            tests.append(lambda c, lo=av[0], hi=av[1]: lo <= ord(c) <= hi)
            hints += chr(av[0]) + chr(av[1]) + chr((av[0] + av[1]) // 2)
        elif op is sre.CATEGORY and av in _CATEGORIES:
            rx = re.compile(_CATEGORIES[av], flags & re.ASCII)
            tests.append(lambda c, rx=rx: rx.match(c) is not None)
        else:
            tests.append(lambda c: True)  # unknown member: assume it may read anything
    return (lambda c: any(t(c) for t in tests) != negate), hints


def _components(roots: Iterable[Any], successors: Callable[[Any], Iterable[Any]]) -> dict[Any, int]:
    """Strongly connected components (Tarjan, iterative) of what `roots` reach:
    node -> component number."""
    index: dict[Any, int] = {}
    low: dict[Any, int] = {}
    component: dict[Any, int] = {}
    stack: list[Any] = []
    for root in roots:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        work = [(root, iter(successors(root)))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(successors(child))))
                    break
                if child not in component:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    while True:
                        member = stack.pop()
                        component[member] = index[node]
                        if member == node:
                            break
    return component
