"""The path index finds exactly what a plain first-match scan over all matchers finds, and the
overlap verdicts agree with what matchers actually match."""
from __future__ import annotations

import itertools
import random
import re

from proxy.rules.bucketing import RequestKeys
from proxy.rules.index import PathIndex
from proxy.rules.matchers import PATH, PREFIX, REGEX, TEMPLATE, Matcher
from proxy.rules.overlap import COVERS, OVERLAPS, relation
from proxy.rules.paths import segments

WORDS = ["api", "products", "carts", "7", "x", ""]


def random_matcher(rng: random.Random, order: int, words: list[str] = WORDS[:-1]) -> Matcher:
    kind = rng.choice([PATH, PREFIX, TEMPLATE, REGEX])
    segs = [rng.choice(words) for _ in range(rng.randint(0 if kind == PREFIX else 1, 3))]
    if kind == TEMPLATE:
        segs = [s if rng.random() < 0.6 else f"{{v{i}}}" for i, s in enumerate(segs)]
    value = "/" + "/".join(segs)
    regex = None
    if kind == REGEX:
        value = "/" + "/".join(rng.choice(["api", "[a-z]+", "[0-9]+", ".*"]) for _ in segs)
        regex = re.compile(value)
    methods = rng.choice([None, frozenset({"GET"}), frozenset({"POST", "PUT"})])
    return Matcher(capability=f"c{order}", index=0, order=order, kind=kind, value=value,
                   methods=methods, regex=regex)


def scan(matchers: list[Matcher], method: str, path: str) -> Matcher | None:
    segs = segments(path)
    for m in matchers:
        if m.kind == PATH:
            ok = path == m.value
        elif m.kind == PREFIX:
            want = m.segments
            ok = segs[:len(want)] == want
        elif m.kind == TEMPLATE:
            want = m.segments
            ok = len(segs) == len(want) and all(w == s or (w is None and s != "") for w, s in zip(want, segs))
        else:
            ok = True  # the regex itself is checked by accepts()
        if ok and m.accepts(method, path, RequestKeys({}, "")):
            return m
    return None


def test_index_agrees_with_a_first_match_scan() -> None:
    rng = random.Random(20261128)
    winners: dict[str, int] = {}
    for _ in range(30):
        matchers = [random_matcher(rng, i) for i in range(rng.randint(1, 40))]
        index = PathIndex(matchers)
        for _ in range(200):
            path = "/" + "/".join(rng.choice(WORDS) for _ in range(rng.randint(0, 4)))
            method = rng.choice(["GET", "POST", "PUT", "DELETE"])
            expected = scan(matchers, method, path)
            assert index.match(method, path, RequestKeys({}, "")) is expected, (path, method)
            if expected is not None:
                winners[expected.kind] = winners.get(expected.kind, 0) + 1
    # The comparison is not vacuous: every kind of matcher wins often.
    assert set(winners) == {PATH, PREFIX, TEMPLATE, REGEX} and min(winners.values()) > 50


def test_overlap_verdicts_hold_on_sampled_requests() -> None:
    """COVERS must never reject a file wrongly, and "disjoint" must never hide a real overlap."""
    rng = random.Random(7)
    words = ["api", "7"]  # few words, so pairs often meet
    paths = ["/" + "/".join(p) for n in range(4) for p in itertools.product(words + ["", "x"], repeat=n)]
    verdicts: dict[str | None, int] = {}
    for _ in range(400):
        a, b = random_matcher(rng, 0, words), random_matcher(rng, 1, words)
        verdict = relation(a, b)
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        for method in ("GET", "POST", "PUT"):
            for path in paths:
                in_b = scan([b], method, path) is b
                in_a = scan([a], method, path) is a
                if verdict == COVERS and in_b:
                    assert in_a, (a.describe(), b.describe(), method, path)
                if verdict is None and REGEX not in (a.kind, b.kind):
                    assert not (in_a and in_b), (a.describe(), b.describe(), method, path)
    assert min(verdicts.get(v, 0) for v in (COVERS, OVERLAPS, None)) > 20, verdicts
