"""The path index: finds the few matchers that can match a path without scanning them all.

Exact paths sit in a dict; prefixes and templates in a segment trie (a variable segment is a
wildcard edge); regexes in a short fallback list. Lookup cost follows the path's depth, not the
number of capabilities. Among the candidates, the lowest file order that accepts wins.
"""
from __future__ import annotations

from proxy.rules.bucketing import RequestKeys
from proxy.rules.matchers import PATH, PREFIX, REGEX, Matcher
from proxy.rules.paths import segments


class _Node:
    __slots__ = ("children", "wildcard", "prefixes", "templates")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.wildcard: _Node | None = None
        self.prefixes: list[Matcher] = []
        self.templates: list[Matcher] = []


class PathIndex:
    def __init__(self, matchers: list[Matcher]) -> None:
        self._exact: dict[str, list[Matcher]] = {}
        self._root = _Node()
        self._regexes: list[Matcher] = []
        for m in sorted(matchers, key=lambda m: m.order):
            if m.kind == PATH:
                self._exact.setdefault(m.value, []).append(m)
            elif m.kind == REGEX:
                self._regexes.append(m)
            else:
                node = self._root
                for seg in m.segments:
                    if seg is None:
                        node.wildcard = node.wildcard or _Node()
                        node = node.wildcard
                    else:
                        node = node.children.setdefault(seg, _Node())
                (node.prefixes if m.kind == PREFIX else node.templates).append(m)

    def candidates(self, path: str) -> list[Matcher]:
        """Matchers whose path condition may hold (regexes are checked later), any order."""
        found: list[Matcher] = list(self._exact.get(path, ()))
        segs = segments(path)
        node: _Node | None = self._root
        found += node.prefixes
        for seg in segs:
            node = node.children.get(seg)
            if node is None:
                break
            found += node.prefixes
        self._templates(self._root, segs, 0, found)
        found += self._regexes
        return found

    def _templates(self, node: _Node, segs: list[str], i: int, found: list[Matcher]) -> None:
        if i == len(segs):
            found += node.templates
            return
        child = node.children.get(segs[i])
        if child is not None:
            self._templates(child, segs, i + 1, found)
        if node.wildcard is not None and segs[i]:
            self._templates(node.wildcard, segs, i + 1, found)

    def match(self, method: str, path: str, keys: RequestKeys) -> Matcher | None:
        """The first matcher in file order that accepts the request."""
        found = self.candidates(path)
        if len(found) > 1:
            found.sort(key=_order)
        for m in found:
            if m.accepts(method, path, keys):
                return m
        return None


def _order(m: Matcher) -> int:
    return m.order
