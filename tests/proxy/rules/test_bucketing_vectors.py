"""Sticky bucketing: published vectors, stickiness as the percentage moves, and two processes
deciding identically."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mmh3
import pytest

from proxy.decision import LEGACY, SERVICE
from proxy.rules import load_table
from proxy.rules.bucketing import bucket

VECTORS_FILE = Path(__file__).with_name("bucketing_vectors.json")
# (group, key) -> bucket, where bucket = murmur3_x86_32("<group>:<key>", seed 0) % 10000.
# The same vectors, for other implementations, are in bucketing_vectors.json.
VECTORS = [
    ('catalog', '1', 1766),
    ('catalog', '42', 5038),
    ('catalog', 'user-1', 1795),
    ('catalog', 'user-2', 7820),
    ('catalog', 'alice@example.org', 2622),
    ('catalog', '3f2504e0-4f89-11d3-9a0c-0305e82c3301', 4317),
    ('catalog', 'session-abc123', 7579),
    ('catalog', 'Zoë', 8368),
    ('catalog', '東京', 4370),
    ('catalog', '', 4630),
    ('catalog.shadow', 'user-1', 4700),
    ('catalog.shadow', '42', 8166),
    ('orders', 'user-1', 4159),
    ('orders', '42', 9775),
    ('checkout', 'a' * 64, 1058),
]
ROOT = Path(__file__).resolve().parents[3]

RULES = """\
version: 1
backends:
  legacy: {{url: http://127.0.0.1:9001}}
  svc: {{url: http://127.0.0.1:9002}}
default: legacy
capabilities:
  - name: catalog
    match: [{{path_prefix: /api/products}}]
    legacy: legacy
    service: svc
    stage: canary
    writes: legacy
    rollout: {{percent: {percent}, sticky: [header:X-User-Id, cookie:session_id, query:uid]}}
"""


@pytest.mark.parametrize("group, key, expected", VECTORS)
def test_vectors(group: str, key: str, expected: int) -> None:
    assert bucket(group, key) == expected


def test_the_published_vector_file_matches() -> None:
    doc = json.loads(VECTORS_FILE.read_text("utf-8"))
    assert doc["buckets"] == 10_000
    assert [(v["group"], v["key"], v["bucket"]) for v in doc["vectors"]] == VECTORS


def test_the_hash_is_unleash_murmur3() -> None:
    # Unleash's cross-client check (node, java and go clients agree): murmur3("gr1:123") % 100 + 1.
    assert mmh3.hash("gr1:123", seed=0, signed=False) % 100 + 1 == 73
    assert mmh3.hash("groupX:999", seed=0, signed=False) % 100 + 1 == 25
    # ...and our buckets are that hash on the finer 0..9999 scale.
    assert bucket("gr1", "123") == mmh3.hash("gr1:123", seed=0, signed=False) % 10_000


def service_users(table, users) -> set[str]:
    return {u for u in users
            if table.decide("GET", "/api/products", "", {"x-user-id": u}).side == SERVICE}


def test_raising_the_percentage_only_adds_clients_and_lowering_only_removes(rules_file) -> None:
    users = [f"user-{i}" for i in range(10_000)]
    never = lambda: pytest.fail("a request with a sticky key must not use randomness")  # noqa: E731
    sets = {p: service_users(load_table(rules_file(RULES.format(percent=p)), rng=never, environ={}), users)
            for p in (5, 25, 50)}
    assert sets[5] < sets[25] < sets[50]  # 5 -> 25 -> 50: nobody leaves the service
    for p, got in sets.items():
        assert abs(len(got) - p * 100) < 300, (p, len(got))  # the share is about right
    back_down = service_users(load_table(rules_file(RULES.format(percent=25)), environ={}), users)
    assert back_down == sets[25]  # 50 -> 25 removes exactly the clients 25 -> 50 added
    assert {u for u in users if bucket("catalog", u) < 2500} == sets[25]


def test_sticky_sources_are_tried_in_order(rules_file) -> None:
    table = load_table(rules_file(RULES.format(percent=50)), rng=lambda: 0, environ={})
    # Pick keys whose buckets fall on either side of 5000, so each source's effect shows.
    inside = next(k for k in map(str, range(100)) if bucket("catalog", k) < 5000)
    outside = next(k for k in map(str, range(100)) if bucket("catalog", k) >= 5000)

    def side(query: str = "", **headers: str) -> str:
        return table.decide("GET", "/api/products", query, headers).side

    assert side(f"uid={outside}", **{"x-user-id": inside, "cookie": f"session_id={outside}"}) == SERVICE
    assert side(f"uid={inside}", **{"cookie": f"a=1; session_id={outside}"}) == LEGACY
    assert side(f"x=1&uid={inside}") == SERVICE
    assert side(f"uid={outside}", **{"x-user-id": ""}) == LEGACY  # empty header: next source


def test_requests_without_a_key_get_a_random_bucket_from_the_injected_rng(rules_file) -> None:
    draws = iter([0, 9999, 499, 500])
    table = load_table(rules_file(RULES.format(percent=5)), rng=lambda: next(draws), environ={})
    sides = [table.decide("GET", "/api/products", "", {}).side for _ in range(4)]
    assert sides == [SERVICE, LEGACY, SERVICE, LEGACY]


DECIDE_SCRIPT = """
import json, sys
from proxy.rules import load_table
table = load_table(sys.argv[1], rng=lambda: 0, environ={})
out = []
for i in range(1000):
    d = table.decide("GET", f"/api/products/{i}", "", {"x-user-id": f"client-{i}"})
    out.append([d.side, d.backend.name, d.reason, d.route])
print(json.dumps(out))
"""


def test_two_processes_decide_identically(rules_file) -> None:
    path = rules_file(RULES.format(percent=25))
    results = []
    for hash_seed in ("1", "2"):  # different str-hash seeds: decisions must not depend on them
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        proc = subprocess.run([sys.executable, "-c", DECIDE_SCRIPT, str(path)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        results.append(json.loads(proc.stdout))
    assert results[0] == results[1]
    assert len(results[0]) == 1000
    expected = [SERVICE if bucket("catalog", f"client-{i}") < 2500 else LEGACY for i in range(1000)]
    assert [r[0] for r in results[0]] == expected
    assert 150 < expected.count(SERVICE) < 350
