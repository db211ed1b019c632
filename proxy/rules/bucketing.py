"""Sticky percentage bucketing: a client's bucket is a pure function of (group, sticky key).

bucket = murmur3_x86_32("<group>:<key>", seed 0, unsigned) % 10000, i.e. 0..9999 — Unleash's
hash on a 100x finer scale so 0.01 % steps work. A request is in a P % rollout when
bucket < P * 100, so raising P only adds clients and lowering it only removes them, and every
process (any language with murmur3) computes the same answer. The rollout's group is the
capability name; the shadow sample uses `<capability>.shadow` so the shadowed clients are not
simply the first clients of the rollout. Vectors: tests/proxy/rules/bucketing_vectors.json.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import parse_qsl

import mmh3

BUCKETS = 10_000
Rng = Callable[[], int]


def bucket(group: str, key: str) -> int:
    return mmh3.hash(f"{group}:{key}", seed=0, signed=False) % BUCKETS


def threshold(percent: float) -> int:
    """Buckets below this are in: 25 % -> 2500, 0.5 % -> 50."""
    return round(percent * (BUCKETS // 100))


def default_rng() -> int:
    return random.randrange(BUCKETS)


def parse_cookies(header: str) -> dict[str, str]:
    """`a=1; b=2` -> {a: 1, b: 2}; lenient (first value wins), no unquoting beyond quotes."""
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip('"')
    return out


def parse_query(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(name, value)
    return out


@dataclass(frozen=True, slots=True)
class StickySource:
    """Where a sticky key comes from: `header:X-User-Id`, `cookie:session_id`, `query:uid`."""
    kind: str   # header | cookie | query
    name: str   # as looked up: header names lower-case
    text: str = field(default="", compare=False)  # as written in the rules, for display

    @classmethod
    def parse(cls, text: str) -> "StickySource":
        kind, _, name = text.partition(":")
        return cls(kind, name.lower() if kind == "header" else name, text)

    def __str__(self) -> str:
        return self.text or f"{self.kind}:{self.name}"


class RequestKeys:
    """The parts of one request a sticky key can come from; cookies and query parsed lazily."""
    __slots__ = ("headers", "query", "_cookies", "_params")

    def __init__(self, headers: Mapping[str, str], query: str) -> None:
        self.headers = headers
        self.query = query
        self._cookies: dict[str, str] | None = None
        self._params: dict[str, str] | None = None

    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.get("cookie", ""))
        return self._cookies

    def params(self) -> dict[str, str]:
        if self._params is None:
            self._params = parse_query(self.query) if self.query else {}
        return self._params

    def sticky_key(self, sources: tuple[StickySource, ...]) -> str | None:
        """The first non-empty key among the sources, tried in order."""
        for source in sources:
            if source.kind == "header":
                value = self.headers.get(source.name)
            elif source.kind == "cookie":
                value = self.cookies().get(source.name)
            else:
                value = self.params().get(source.name)
            if value:
                return value
        return None


def request_bucket(group: str, sources: tuple[StickySource, ...], keys: RequestKeys,
                   rng: Rng) -> int:
    """The request's bucket in `group`; a fresh random one when it carries no sticky key."""
    key = keys.sticky_key(sources)
    return bucket(group, key) if key is not None else rng() % BUCKETS
