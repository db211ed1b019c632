"""The proxy benchmark: one upstream, one JSON answer, every peer measured in the same run.

Peers: direct to the upstream; nginx as a keep-alive reverse proxy; the naive aiohttp proxy;
strangler with 5 and with 500 capabilities in its rule table (the request always matches the
*last* capability, the worst case for a table scanned in order). Each peer gets throughput runs
(wrk, closed loop, `--connections`) and low-load latency runs (wrk -c4, each connection pausing
after every answer: a near-fixed rate, as Debian has wrk but no wrk2), interleaved with the
other peers' in rounds, plus its CPU time per request. The bars are ratios against peers from
this same run, never absolute numbers.
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

from benchmarks.nginx import start_nginx
from benchmarks.processes import Server, cpu_seconds, free_port, spawn, wait_until_answers
from benchmarks.result_files import write_result
from benchmarks.upstream import BODY, start_upstream
from benchmarks.wrk import Load, run_wrk

WORKERS = 2                 # strangler and nginx get the same number of worker processes
LATENCY_CONNECTIONS = 4     # "modest fixed concurrency" for the added-latency figure,
PAUSE_MS = 2                # each connection pausing this long after an answer: ~1.5-2k req/s
WARMUP_SECONDS = 2
ROUNDS = 5                  # interleaved rounds per peer; the median round counts
LOW_LOAD_SECONDS = 2
CAPABILITY_COUNTS = (5, 500)
# Every peer is asked for the same path; in strangler's table it is the last capability's.
LAST_CAPABILITY = max(CAPABILITY_COUNTS) - 1
BENCH_PATH = f"/cap-{LAST_CAPABILITY:04d}/items/7"
BARS = {"strangler/nginx": 0.5, "strangler/naive": 2.0, "added_p50_ms": 1.0}

Starter = Callable[[Path, Server], Server]   # (workdir, upstream) -> a started, unwaited peer


# --- peers ----------------------------------------------------------------------------------

def start_direct(workdir: Path, upstream: Server) -> Server:
    """No proxy: wrk talks to the upstream itself (owns no process, so stop() is a no-op)."""
    return Server("direct", upstream.url)


def start_nginx_proxy(workdir: Path, upstream: Server) -> Server:
    return start_nginx("nginx", "proxy.conf", workdir / "nginx", free_port(),
                       workers=WORKERS, upstream=upstream.url.removeprefix("http://"))


def start_naive(workdir: Path, upstream: Server) -> Server:
    """One process, as the issue defines the peer ("one ClientSession": `web.run_app` as is)."""
    port = free_port()
    log = workdir / "naive.log"
    proc = spawn([sys.executable, "-m", "benchmarks.naive_proxy", "--listen", f"127.0.0.1:{port}",
                  "--upstream", upstream.url], log)
    return Server("naive aiohttp", f"http://127.0.0.1:{port}", [proc], log)


def rules_document(upstream_url: str, capabilities: int) -> dict:
    """A rule table of `capabilities` capabilities, all on `legacy`, numbered so the last one is
    LAST_CAPABILITY (the one BENCH_PATH hits); `default:` is the upstream too."""
    first = LAST_CAPABILITY + 1 - capabilities
    return {
        "version": 1,
        "backends": {"upstream": {"url": upstream_url, "timeout": "5s"}},
        "capabilities": [
            {"name": f"cap-{i:04d}",
             "match": [{"path_template": f"/cap-{i:04d}/items/{{id}}", "methods": ["GET", "HEAD"]},
                       {"path_prefix": f"/cap-{i:04d}/admin/"}],
             "legacy": "upstream", "stage": "legacy"}
            for i in range(first, LAST_CAPABILITY + 1)],
        "default": "upstream",
    }


def strangler_starter(capabilities: int) -> Starter:
    """The one place that knows how to run strangler's proxy for the benchmark."""
    def start(workdir: Path, upstream: Server) -> Server:
        rules = workdir / f"rules-{capabilities}.yaml"
        rules.write_text(yaml.safe_dump(rules_document(upstream.url, capabilities), sort_keys=False))
        port, admin = free_port(), free_port()
        log = workdir / f"strangler-{capabilities}.log"
        proc = spawn([str(strangler_command()), "proxy", "--rules", str(rules),
                      "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                      "--workers", str(WORKERS),
                      # Shadowing stays as it would be in production (nothing to shadow at stage
                      # legacy); only its store moves out of the checkout.
                      "--shadow-store", f"sqlite:///{workdir / 'shadow.sqlite3'}"], log,
                     env={"STRANGLER_ADMIN_TOKEN": os.urandom(16).hex()})
        return Server(f"strangler ({capabilities} caps)", f"http://127.0.0.1:{port}", [proc], log)
    return start


def strangler_command() -> Path:
    return Path(sys.executable).with_name("strangler")


def peers() -> list[Starter]:
    return [start_direct, start_nginx_proxy, start_naive,
            *(strangler_starter(n) for n in CAPABILITY_COUNTS)]


# --- measuring ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    load: Load
    cpu_us_per_request: float | None   # the proxy's own CPU; None for direct (no proxy)


def check_answer(url: str) -> None:
    """A peer that answers fast but wrong must not score: demand the upstream's exact bytes."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read()
    if resp.status != 200 or body != BODY.encode():
        raise RuntimeError(f"{url} answered {resp.status} with {len(body)} bytes, not the upstream's")


def sample(server: Server, connections: int, threads: int, seconds: float,
           pause_ms: int | None = None) -> Sample:
    before = cpu_seconds(server)
    load = run_wrk(server.url + BENCH_PATH, connections=connections, threads=threads,
                   seconds=seconds, pause_ms=pause_ms)
    if load.errors:
        raise RuntimeError(f"{server.name}: {load.errors} failed requests under load")
    cpu = (cpu_seconds(server) - before) * 1e6 / load.requests if server.processes else None
    return Sample(load, cpu)


@dataclass(frozen=True)
class PeerResult:
    name: str
    throughput: Sample     # the median of the closed-loop rounds at --connections
    low_load: Sample       # the median of the rounds at LATENCY_CONNECTIONS


def median(samples: list[Sample], key: Callable[[Sample], float]) -> Sample:
    return sorted(samples, key=key)[len(samples) // 2]


def run_peers(starters: list[Starter], connections: int, seconds: float) -> list[PeerResult]:
    """All peers run side by side (idle ones cost nothing) and are measured in interleaved rounds,
    so a burst from another tenant of this shared machine hits one round of each, not one peer;
    each peer's figure is its median round."""
    round_seconds = max(2, math.ceil(seconds / ROUNDS))
    with tempfile.TemporaryDirectory(prefix="strangler-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        upstream = stack.enter_context(start_upstream(workdir))
        wait_until_answers(upstream, BENCH_PATH)
        servers = [stack.enter_context(start(workdir, upstream)) for start in starters]
        for server in servers:
            wait_until_answers(server, BENCH_PATH)
            check_answer(server.url + BENCH_PATH)
            sample(server, connections, WORKERS, WARMUP_SECONDS)
        busy: dict[str, list[Sample]] = {s.name: [] for s in servers}
        calm: dict[str, list[Sample]] = {s.name: [] for s in servers}
        for number in range(1, ROUNDS + 1):
            print(f"  round {number}/{ROUNDS}", file=sys.stderr, flush=True)
            for server in servers:
                busy[server.name].append(sample(server, connections, WORKERS, round_seconds))
            for server in servers:
                calm[server.name].append(
                    sample(server, LATENCY_CONNECTIONS, 1, LOW_LOAD_SECONDS, PAUSE_MS))
    return [PeerResult(s.name, median(busy[s.name], lambda x: x.load.rps),
                       median(calm[s.name], lambda x: x.load.p50_ms)) for s in servers]


# --- reporting ------------------------------------------------------------------------------

def ratios(results: list[PeerResult]) -> dict[str, float]:
    by_name = {r.name: r for r in results}
    rps = {name: r.throughput.load.rps for name, r in by_name.items()}
    direct, nginx, naive = by_name["direct"], by_name["nginx"], by_name["naive aiohttp"]
    out: dict[str, float] = {}
    for n in CAPABILITY_COUNTS:
        name = f"strangler ({n} caps)"
        out[f"strangler/nginx ({n} caps)"] = rps[name] / rps["nginx"]
        out[f"strangler/naive ({n} caps)"] = rps[name] / rps["naive aiohttp"]
        out[f"added_p50_ms ({n} caps)"] = (by_name[name].low_load.load.p50_ms
                                           - direct.low_load.load.p50_ms)
        # CPU per request barely moves when other tenants load the machine; req/s does.
        cpu = by_name[name].throughput.cpu_us_per_request
        out[f"strangler/nginx CPU per request ({n} caps)"] = cpu / nginx.throughput.cpu_us_per_request
        out[f"strangler/naive CPU per request ({n} caps)"] = cpu / naive.throughput.cpu_us_per_request
    few, many = (f"strangler ({n} caps)" for n in CAPABILITY_COUNTS)
    out[f"strangler {CAPABILITY_COUNTS[1]}/{CAPABILITY_COUNTS[0]} caps throughput"] = (
        rps[many] / rps[few])
    out[f"strangler {CAPABILITY_COUNTS[1]}/{CAPABILITY_COUNTS[0]} caps CPU per request"] = (
        by_name[many].throughput.cpu_us_per_request / by_name[few].throughput.cpu_us_per_request)
    out["nginx/direct"] = rps["nginx"] / rps["direct"]
    out["naive/direct"] = rps["naive aiohttp"] / rps["direct"]
    return out


def verdicts(found: dict[str, float]) -> dict[str, bool]:
    """Each bar, for each strangler table size: throughput ratios at least, added latency under."""
    out = {}
    for key, value in found.items():
        bar_name = key.split(" (")[0]
        if bar_name in ("strangler/nginx", "strangler/naive"):
            out[key] = value >= BARS[bar_name]
        elif bar_name == "added_p50_ms":
            out[key] = value < BARS[bar_name]
    return out


def render(results: list[PeerResult], found: dict[str, float], passed: dict[str, bool],
           connections: int, seconds: float) -> str:
    round_seconds = max(2, math.ceil(seconds / ROUNDS))
    lines = [f"proxy benchmark: {len(BODY)}-byte JSON from one nginx upstream; {WORKERS} workers "
             f"for strangler and nginx, 1 for the naive proxy; {os.cpu_count()} CPUs; "
             f"load avg {os.getloadavg()[0]:.2f}",
             f"busy: wrk -t{WORKERS} -c{connections}, {ROUNDS} interleaved rounds of {round_seconds}s; "
             f"low load: wrk -t1 -c{LATENCY_CONNECTIONS} pausing {PAUSE_MS} ms after each answer, "
             f"{ROUNDS} rounds of {LOW_LOAD_SECONDS}s; "
             "median round shown",
             "",
             f"{'peer':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}   "
             f"{'low-load req/s':>14}{'p50 ms':>9}{'p99 ms':>9}"]
    for r in results:
        busy, calm = r.throughput, r.low_load
        cpu = "-" if busy.cpu_us_per_request is None else f"{busy.cpu_us_per_request:.0f}"
        lines.append(f"{r.name:<22}{busy.load.rps:>9.0f}{busy.load.p50_ms:>9.3f}"
                     f"{busy.load.p99_ms:>9.3f}{cpu:>12}   "
                     f"{calm.load.rps:>14.0f}{calm.load.p50_ms:>9.3f}{calm.load.p99_ms:>9.3f}")
    lines.append("")
    for key, value in found.items():
        unit = " ms" if key.startswith("added") else ""
        verdict = ""
        if key in passed:
            bar = BARS[key.split(" (")[0]]
            sign = "<" if key.startswith("added") else ">="
            verdict = f"   (bar {sign} {bar:g}{unit}: {'pass' if passed[key] else 'FAIL'})"
        lines.append(f"{key:<44}{value:>8.3f}{unit}{verdict}")
    return "\n".join(lines)


def environment() -> dict:
    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"
    commit = version(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"])
    return {"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "python": platform.python_version(),
            "nginx": version(["nginx", "-v"]), "wrk": version(["wrk", "-v"]), "commit": commit}


def main(connections: int, seconds: float) -> int:
    """Run every peer, print the table and ratios, save JSON; exit 1 if a bar was missed."""
    started = time.time()
    env_before = environment()
    results = run_peers(peers(), connections, seconds)
    found = ratios(results)
    passed = verdicts(found)
    print(render(results, found, passed, connections, seconds))
    path = write_result("proxy", {
        "benchmark": "proxy", "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "config": {"connections": connections, "seconds": seconds, "rounds": ROUNDS,
                   "workers": WORKERS, "latency_connections": LATENCY_CONNECTIONS,
                   "latency_pause_ms": PAUSE_MS, "body_bytes": len(BODY),
                   "path": BENCH_PATH, "capability_counts": CAPABILITY_COUNTS},
        "environment": env_before, "loadavg_after": os.getloadavg(),
        "peers": [asdict(r) for r in results], "ratios": found, "bars": BARS, "passed": passed,
    })
    print(f"\nresult: {path}")
    return 0 if all(passed.values()) else 1
