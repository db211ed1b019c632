"""The proxy benchmark: one upstream, one JSON answer, every peer measured in the same run.

Peers: direct to the upstream; nginx as a keep-alive reverse proxy; the naive aiohttp proxy;
strangler with 5 and with 500 capabilities in its rule table (the request always matches the
*last* capability, the worst case for a table scanned in order). Each peer gets a throughput run
(wrk, closed loop, `--connections`) and a low-load latency run (wrk -c4: Debian has no wrk2, so
no fixed-rate mode). The bars are ratios against peers from this same run, never absolute numbers.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

from benchmarks.nginx import start_nginx
from benchmarks.processes import Server, free_port, spawn, wait_until_answers
from benchmarks.upstream import BODY, start_upstream
from benchmarks.wrk import Load, run_wrk

WORKERS = 2                 # strangler and nginx get the same number of worker processes
LATENCY_CONNECTIONS = 4     # "modest fixed concurrency" for the added-latency figure
WARMUP_SECONDS = 2
CAPABILITY_COUNTS = (5, 500)
# Every peer is asked for the same path; in strangler's table it is the last capability's.
LAST_CAPABILITY = max(CAPABILITY_COUNTS) - 1
BENCH_PATH = f"/cap-{LAST_CAPABILITY:04d}/items/7"
RESULTS = Path(__file__).with_name("results")
BARS = {"strangler/nginx": 0.5, "strangler/naive": 2.0, "added_p50_ms": 1.0}

Starter = Callable[[Path, Server], Server]   # (workdir, upstream) -> a started, unwaited peer


@dataclass(frozen=True)
class PeerResult:
    name: str
    throughput: Load
    low_load: Load


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
                      "--workers", str(WORKERS)], log,
                     env={"STRANGLER_ADMIN_TOKEN": os.urandom(16).hex()})
        return Server(f"strangler ({capabilities} caps)", f"http://127.0.0.1:{port}", [proc], log)
    return start


def strangler_command() -> Path:
    return Path(sys.executable).with_name("strangler")


def strangler_available() -> bool:
    """True once the `strangler proxy` sub-command exists (it is being built alongside)."""
    try:
        return subprocess.run([str(strangler_command()), "proxy", "--help"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def peers(with_strangler: bool) -> list[Starter]:
    chosen: list[Starter] = [start_direct, start_nginx_proxy, start_naive]
    if with_strangler:
        chosen += [strangler_starter(n) for n in CAPABILITY_COUNTS]
    return chosen


# --- measuring ------------------------------------------------------------------------------

def check_answer(url: str) -> None:
    """A peer that answers fast but wrong must not score: demand the upstream's exact bytes."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read()
    if resp.status != 200 or body != BODY.encode():
        raise RuntimeError(f"{url} answered {resp.status} with {len(body)} bytes, not the upstream's")


def measure(server: Server, connections: int, seconds: float) -> PeerResult:
    url = server.url + BENCH_PATH
    check_answer(url)
    run_wrk(url, connections=connections, threads=WORKERS, seconds=WARMUP_SECONDS)
    throughput = run_wrk(url, connections=connections, threads=WORKERS, seconds=seconds)
    low_load = run_wrk(url, connections=LATENCY_CONNECTIONS, threads=1, seconds=max(2, seconds / 2))
    for load in (throughput, low_load):
        if load.errors:
            raise RuntimeError(f"{server.name}: {load.errors} failed requests under load")
    return PeerResult(server.name, throughput, low_load)


def run_peers(starters: list[Starter], connections: int, seconds: float) -> list[PeerResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="strangler-bench-") as tmp:
        workdir = Path(tmp)
        with start_upstream(workdir) as upstream:
            wait_until_answers(upstream, BENCH_PATH)
            for start in starters:
                with start(workdir, upstream) as server:
                    wait_until_answers(server, BENCH_PATH)
                    print(f"  measuring {server.name} ...", file=sys.stderr, flush=True)
                    results.append(measure(server, connections, seconds))
    return results


# --- reporting ------------------------------------------------------------------------------

def ratios(results: list[PeerResult]) -> dict[str, float]:
    by_name = {r.name: r for r in results}
    direct, nginx, naive = by_name["direct"], by_name["nginx"], by_name["naive aiohttp"]
    out: dict[str, float] = {}
    for n in CAPABILITY_COUNTS:
        s = by_name.get(f"strangler ({n} caps)")
        if s is None:
            continue
        out[f"strangler/nginx ({n} caps)"] = s.throughput.rps / nginx.throughput.rps
        out[f"strangler/naive ({n} caps)"] = s.throughput.rps / naive.throughput.rps
        out[f"added_p50_ms ({n} caps)"] = s.low_load.p50_ms - direct.low_load.p50_ms
    if f"strangler ({CAPABILITY_COUNTS[0]} caps)" in by_name:
        few, many = (by_name[f"strangler ({n} caps)"] for n in CAPABILITY_COUNTS)
        out[f"strangler {CAPABILITY_COUNTS[1]}/{CAPABILITY_COUNTS[0]} caps"] = (
            many.throughput.rps / few.throughput.rps)
    out["nginx/direct"] = nginx.throughput.rps / direct.throughput.rps
    out["naive/direct"] = naive.throughput.rps / direct.throughput.rps
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
    lines = [f"proxy benchmark: {len(BODY)}-byte JSON from one nginx upstream; {WORKERS} workers "
             f"for strangler and nginx, 1 for the naive proxy; {os.cpu_count()} CPUs; load avg {os.getloadavg()[0]:.2f}",
             f"throughput: wrk -t{WORKERS} -c{connections} -d{round(seconds)}s; "
             f"low load: wrk -t1 -c{LATENCY_CONNECTIONS}",
             "",
             f"{'peer':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}   "
             f"{'low-load p50':>12}{'p99 ms':>9}"]
    for r in results:
        t, low = r.throughput, r.low_load
        lines.append(f"{r.name:<22}{t.rps:>10.0f}{t.p50_ms:>9.3f}{t.p99_ms:>9.3f}   "
                     f"{low.p50_ms:>12.3f}{low.p99_ms:>9.3f}")
    lines.append("")
    for key, value in found.items():
        unit = " ms" if key.startswith("added") else ""
        verdict = ""
        if key in passed:
            bar = BARS[key.split(" (")[0]]
            sign = "<" if key.startswith("added") else ">="
            verdict = f"   (bar {sign} {bar:g}{unit}: {'pass' if passed[key] else 'FAIL'})"
        lines.append(f"{key:<32}{value:>8.3f}{unit}{verdict}")
    if not any(k.startswith("strangler") for k in found):
        lines.append("strangler: `strangler proxy` is not available yet; peers only, no bars checked")
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


def write_result(payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"proxy-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
    return path


def main(connections: int, seconds: float) -> int:
    """Run every peer, print the table and ratios, save JSON; exit 1 if a bar was missed."""
    with_strangler = strangler_available()
    started = time.time()
    env_before = environment()
    results = run_peers(peers(with_strangler), connections, seconds)
    found = ratios(results)
    passed = verdicts(found)
    print(render(results, found, passed, connections, seconds))
    path = write_result({
        "benchmark": "proxy", "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "config": {"connections": connections, "seconds": seconds, "workers": WORKERS,
                   "latency_connections": LATENCY_CONNECTIONS, "body_bytes": len(BODY),
                   "path": BENCH_PATH, "capability_counts": CAPABILITY_COUNTS},
        "environment": env_before, "loadavg_after": os.getloadavg(),
        "peers": [asdict(r) for r in results], "ratios": found, "bars": BARS, "passed": passed,
    })
    print(f"\nresult: {path}")
    return 0 if all(passed.values()) else 1
