"""Rule-table match cost vs number of capabilities: `python -m benchmarks.rule_table`.

In-process, no network: decide() throughput of the compiled table (segment-trie index) with 5,
50, 500 and 5,000 capabilities, each peer measured in the same run, printed as ratios against
the 5-capability table. A naive first-match scan over the same matchers is the peer that shows
what an unindexed table would cost. The request hits the *last* capability (worst case for a scan).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import yaml

from proxy.rules import load_table
from proxy.rules.bucketing import RequestKeys
from proxy.rules.matchers import PATH, PREFIX, TEMPLATE
from proxy.rules.paths import segments

COUNTS = (5, 50, 500, 5000)


def rules(n: int) -> dict:
    return {"version": 1,
            "backends": {"legacy": {"url": "http://127.0.0.1:9001"},
                         "svc": {"url": "http://127.0.0.1:9002"}},
            "capabilities": [
                {"name": f"cap{i}",
                 "match": [{"path_template": f"/api/cap{i}/items/{{id}}", "methods": ["GET"]},
                           {"path_prefix": f"/api/cap{i}/admin"}],
                 "legacy": "legacy", "service": "svc", "stage": "canary", "writes": "legacy",
                 "rollout": {"percent": 25, "sticky": ["header:X-User-Id"]}}
                for i in range(n)],
            "default": "legacy"}


def scan(table) -> Callable[[str, str, dict], object]:
    """The naive peer: test every matcher in file order."""
    matchers = [(m, m.kind, m.value, m.segments) for cap in table.capabilities for m in cap.matchers]

    def path_ok(kind: str, value: str, want: list, path: str, segs: list[str]) -> bool:
        if kind == PATH:
            return path == value
        if kind == PREFIX:
            return len(segs) >= len(want) and segs[:len(want)] == want
        if kind == TEMPLATE:
            return len(segs) == len(want) and all(w == s or (w is None and s) for w, s in zip(want, segs))
        return True  # regexes are checked by accepts()

    def first(method: str, path: str, headers: dict):
        keys, segs = RequestKeys(headers, ""), segments(path)
        return next((m for m, kind, value, want in matchers
                     if path_ok(kind, value, want, path, segs) and m.accepts(method, path, keys)), None)
    return first


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        n += 200
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rule_table", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="per peer (default 1)")
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in COUNTS:
            path = Path(tmp) / f"rules-{n}.yaml"
            path.write_text(yaml.safe_dump(rules(n), sort_keys=False))
            t0 = time.perf_counter()
            table = load_table(path, environ={})
            load_s = time.perf_counter() - t0
            target, headers = f"/api/cap{n - 1}/items/7", {"x-user-id": "client-7"}
            assert table.decide("GET", target, "", headers).capability == f"cap{n - 1}"
            results[f"indexed {n}"] = rate(lambda: table.decide("GET", target, "", headers), args.seconds)
            first = scan(table)
            results[f"scan {n}"] = rate(lambda: first("GET", target, headers), args.seconds)
            print(f"{n:>5} capabilities: load+check {load_s * 1000:7.1f} ms")
    base = results["indexed 5"]
    print(f"\n{'peer':<14}{'decisions/s':>14}{'vs indexed 5':>14}")
    for name, value in results.items():
        print(f"{name:<14}{value:>14,.0f}{value / base:>13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
