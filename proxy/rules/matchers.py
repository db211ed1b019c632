"""One compiled request matcher: a path condition plus optional methods, headers and query.

Built and checked once at load; at request time only `accepts` runs (the path part is
answered by proxy.rules.index, except for regexes, which it checks here).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.rules.bucketing import RequestKeys
from proxy.rules.paths import Segment, prefix_segments, template_segments

PATH = "path"
PREFIX = "path_prefix"
TEMPLATE = "path_template"
REGEX = "path_regex"
KINDS = (PATH, PREFIX, TEMPLATE, REGEX)


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """A header or query value condition: an exact value, or a regex over the whole value."""
    name: str
    exact: str | None = None
    regex: re.Pattern[str] | None = None

    def accepts(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(value) is not None
        return value == self.exact

    def describe(self) -> str:
        return f"{self.name}~{self.regex.pattern}" if self.regex is not None else f"{self.name}={self.exact}"


@dataclass(frozen=True, slots=True)
class Matcher:
    capability: str
    index: int                      # position in the capability's match list
    order: int                      # global file order: lower wins
    kind: str                       # PATH | PREFIX | TEMPLATE | REGEX
    value: str                      # the path, prefix, template or regex as written
    methods: frozenset[str] | None  # None: any method
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()
    regex: re.Pattern[str] | None = None

    @property
    def segments(self) -> list[Segment]:
        """Literal segments (None for variables) of a path, prefix or template."""
        if self.kind == PREFIX:
            return list(prefix_segments(self.value))
        return template_segments(self.value)

    def accepts(self, method: str, path: str, keys: RequestKeys) -> bool:
        """Everything but the index's path check (regex paths are checked here)."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.regex is not None and self.regex.fullmatch(path) is None:
            return False
        for cond in self.headers:
            if not cond.accepts(keys.headers.get(cond.name)):
                return False
        if self.query:
            params = keys.params()
            for cond in self.query:
                if not cond.accepts(params.get(cond.name)):
                    return False
        return True

    def describe(self) -> str:
        parts = [f"{self.kind} {self.value}"]
        if self.methods is not None:
            parts.append("methods " + ",".join(sorted(self.methods)))
        parts += [f"header {c.describe()}" for c in self.headers]
        parts += [f"query {c.describe()}" for c in self.query]
        return "; ".join(parts)
