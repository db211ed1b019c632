"""CPU per shadow in the shadow process's dispatcher: `python -m benchmarks shadow-cpu`.

In-process against a real nginx upstream (benchmarks.upstream), the way the shadow process
works: captures as a worker sends them, in batches of BATCH, each replayed, compared and stored.
The peer, measured in the same run, is the replay alone (`proxy.shadow.replay.replay` one after
another on the same keep-alive pools: no queue, no comparison, no store), so the ratio says what
the dispatcher adds to the unavoidable request/answer. Process CPU time is steadier on a shared
machine than latency, which makes this the figure to follow when changing the shadow path; the
client-latency effect of that CPU is `python -m benchmarks shadow`.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop
import yaml

from benchmarks.processes import wait_until_answers
from benchmarks.shadow_bench import BENCH_PATH, rules_document
from benchmarks.upstream import BODY, start_upstream
from proxy.decision import Decision
from proxy.exchange import Capture
from proxy.metrics import Metrics
from proxy.rules import load_table
from proxy.shadow.dispatcher import ShadowDispatcher
from proxy.shadow.replay import ShadowClient, replay
from proxy.shadow.store import ShadowStore

BATCH = 8           # captures per batch: a worker's 5 ms flush at the paced benchmark's rate
ROUNDS = 5          # interleaved rounds of each peer; medians shown
HEAD = (b"GET " + BENCH_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n"
        b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: 127.0.0.1:8080\r\nVia: 1.1 strangler\r\nX-Request-Id: %032x\r\n\r\n")
RESPONSE_LINES = [b"Server: nginx", b"Date: Sat, 28 Nov 2026 11:00:00 GMT",
                  b"Content-Type: application/json", b"Content-Length: %d" % len(BODY),
                  b"Connection: keep-alive"]


def capture(decision: Decision, number: int) -> Capture:
    return Capture(decision, "GET", BENCH_PATH.encode(), HEAD % number, [], 200,
                   list(RESPONSE_LINES), [BODY.encode()], 0.0002, time.time())


async def dispatcher_cpu(decision: Decision, store_url: str, shadows: int) -> float:
    """CPU us per shadow through the dispatcher (replay, compare, store)."""
    dispatcher = ShadowDispatcher(ShadowStore(store_url), Metrics(), owns_store=True)
    dispatcher.start()
    try:
        started = time.process_time()
        for first in range(0, shadows, BATCH):
            for number in range(first, first + BATCH):
                dispatcher.submit_capture(capture(decision, number))
            await dispatcher.drain()
        return (time.process_time() - started) * 1e6 / shadows
    finally:
        await dispatcher.close()


async def replay_cpu(decision: Decision, shadows: int) -> float:
    """CPU us per bare replay to the same target, one after another."""
    assert decision.shadow is not None
    client = ShadowClient(32)
    exchange = capture(decision, 0).exchange()
    try:
        started = time.process_time()
        for _ in range(shadows):
            await replay(client, exchange, decision.shadow.target, limit=1 << 20, timeout_s=5,
                         dry_run=False)
        return (time.process_time() - started) * 1e6 / shadows
    finally:
        client.close()


def run(shadows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="strangler-shadow-cpu-") as tmp:
        workdir = Path(tmp)
        with start_upstream(workdir / "legacy") as legacy, \
                start_upstream(workdir / "service") as service:
            for upstream in (legacy, service):
                wait_until_answers(upstream, BENCH_PATH)
            rules = workdir / "rules.yaml"
            rules.write_text(yaml.safe_dump(rules_document(legacy.url, service.url, 100)))
            decision = load_table(rules).decide("GET", BENCH_PATH, "", {})
            store_url = f"sqlite:///{workdir / 'shadow.sqlite3'}"

            async def rounds() -> dict[str, list[float]]:
                found: dict[str, list[float]] = {"dispatcher": [], "replay alone": []}
                await dispatcher_cpu(decision, store_url, shadows // 10)     # warm-up
                for number in range(1, ROUNDS + 1):
                    print(f"  round {number}/{ROUNDS}", file=sys.stderr, flush=True)
                    found["dispatcher"].append(await dispatcher_cpu(decision, store_url, shadows))
                    found["replay alone"].append(await replay_cpu(decision, shadows))
                return found

            found = uvloop.run(rounds())
    return {name: statistics.median(values) for name, values in found.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks shadow-cpu",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shadows", type=int, default=10_000,
                        help="shadows per round and peer (default 10000)")
    args = parser.parse_args(argv)
    found = run(args.shadows)
    base = found["replay alone"]
    for name, us in found.items():
        print(f"{name:<14}{us:8.1f} us CPU per shadow  {us / base:6.2f}x the replay alone")
    return 0
