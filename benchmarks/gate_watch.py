"""What the proxy's gate watcher costs its supervisor: `python -m benchmarks.gate_watch`.

Every second the watcher (proxy.autorollback) merges the workers' metric snapshots, extracts
per-capability figures, subtracts the window's first reading and judges the gates. The peer is
the merge alone, which the supervisor already does for every /metrics scrape and /admin/status:
the ratio says how much the watcher adds on top of work that exists anyway. Measured for 1, 5
and 50 capabilities with 4 workers, each holding 10 status codes per side.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

from operate.gates import evaluate
from proxy.autorollback import _raw, _window
from proxy.metrics import Metrics, merge
from proxy.rules import load_table

WORKERS = 4
STATUSES = ("200", "201", "204", "301", "304", "400", "404", "409", "500", "503")


def rules(n: int, path: Path) -> Path:
    caps = "".join(f"""
  - name: cap{i}
    match: [{{path_prefix: /api/c{i}}}]
    legacy: legacy
    service: svc{i}
    stage: canary
    writes: legacy
    rollout: {{percent: 10, steps: [10, 50, 100]}}
    gates: {{max_error_rate_delta: 1%, max_p99_ratio: 2, min_requests: 100}}
""" for i in range(n))
    backends = "".join(f"  svc{i}: {{url: http://127.0.0.1:{20000 + i}}}\n" for i in range(n))
    path.write_text(f"version: 1\nbackends:\n  legacy: {{url: http://127.0.0.1:19999}}\n"
                    f"{backends}capabilities:{caps}default: legacy\n")
    return path


def snapshots(n: int) -> list[dict]:
    out = []
    for _ in range(WORKERS):
        m = Metrics()
        for i in range(n):
            for side, backend in (("legacy", "legacy"), ("service", f"svc{i}")):
                for status in STATUSES:
                    m.inc("strangler_requests_total", (("backend", backend),
                          ("capability", f"cap{i}"), ("side", side), ("status", status)), 50)
                for v in (0.001, 0.004, 0.02, 0.2):
                    m.observe("strangler_request_duration_seconds",
                              (("backend", backend), ("capability", f"cap{i}")), v)
            m.inc("strangler_fallbacks_total", (("capability", f"cap{i}"), ("reason", "5xx")), 3)
        out.append(m.snapshot())
    return out


def best_of(fn, rounds: int = 5, loops: int = 50) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - t0) / loops)
    return statistics.median(times)


def main() -> None:
    print(f"{'capabilities':>12} {'merge ms':>9} {'tick ms':>8} {'tick/merge':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 5, 50):
            table = load_table(rules(n, Path(tmp) / f"r{n}.yaml"), environ={})
            snaps = snapshots(n)
            first = (0.0, _raw(merge(snaps), table))

            def tick() -> None:
                samples = deque([first, (60.0, _raw(merge(snaps), table))])
                for cap in table.capabilities:
                    evaluate(cap.gates, _window(samples, cap.name, 0.0, (0, 0), None))
            merge_s = best_of(lambda: merge(snaps))
            tick_s = best_of(tick)
            print(f"{n:>12} {merge_s * 1000:>9.3f} {tick_s * 1000:>8.3f} {tick_s / merge_s:>10.2f}")


if __name__ == "__main__":
    main()
