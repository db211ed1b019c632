"""The shadow benchmark: what 100 % shadowing costs the client, and that overload sheds shadows.

One capability at stage `shadow`: legacy and service are two distinct nginx upstreams answering
the same ~500-byte JSON, so every shadow compares equal. Strangler proxies run side by side with
that capability at 0 % and at 100 % shadow (and, for the overload part, 100 % towards a service
that answers after SLOW_MS), all measured in interleaved rounds of one run:

1. saturation: the 0 % proxy's closed-loop peak (wrk -c32), to fix the paced rate;
2. paced load at about LOAD_SHARE of that peak (wrk -c4, each connection pausing between
   answers): client p50 and p99 at 100 % against 0 % — bars p50 <= 1.10x, p99 <= 1.25x;
3. overload (closed loop, wrk -c64): client figures at 0 %, at 100 % towards the fast service
   (shadows shed because the worker is saturated) and at 100 % towards the slow one (shed as its
   queue fills too) — the shadow counters (submitted / compared / dropped, from each proxy's
   /metrics) show they are, and the client p50/p99 ratios against the 0 % proxy's overload
   figures show what shedding leaves the client;
4. control (context, no bar): the 0 % proxy alone against the 0 % proxy beside
   benchmarks.cpu_burner spending, at the shadow process's niceness, the CPU per request the
   shadow process was measured to spend in part 2. What that costs the client is the price of
   that much background CPU on this machine, whoever spends it.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from benchmarks.processes import (Server, cpu_seconds, free_port, process_cpu_seconds, spawn,
                                  wait_until_answers)
from benchmarks.proxy_bench import check_answer, environment, strangler_command
from benchmarks.result_files import write_result
from benchmarks.upstream import start_upstream
from benchmarks.wrk import Load, run_wrk

WORKERS = 2
BENCH_PATH = "/catalog/items/7"
SATURATION_CONNECTIONS = 32
LOAD_SHARE = 0.3            # the paced rate, as a share of the 0 % proxy's peak
PACED_CONNECTIONS = 4
OVERLOAD_CONNECTIONS = 64
ROUNDS = 5                  # interleaved paced rounds per proxy; the median counts
OVERLOAD_ROUNDS = 3
ROUND_SECONDS = 3
SLOW_MS = 200               # the slow shadow target's answer time in the overload part
METRICS_SETTLE_S = 1.5      # the supervisor merges workers' counters once a second
BARS = {"p50": 1.10, "p99": 1.25}
COUNTERS = ("submitted", "compared", "dropped", "errors", "skipped")


@dataclass
class Proxy:
    """One strangler proxy under test and how to read its shadow counters."""
    server: Server
    admin_url: str
    token: str

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    def _admin(self, path: str) -> bytes:
        req = urllib.request.Request(self.admin_url + path,
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read()

    def counters(self) -> dict[str, float]:
        return shadow_totals(self._admin("/metrics").decode())

    def shadow_cpu_seconds(self) -> float:
        """CPU used so far by this proxy's shadow process (0 when it has none)."""
        shadow = json.loads(self._admin("/admin/status")).get("shadow_process") or {}
        return process_cpu_seconds(shadow["pid"]) if shadow.get("pid") else 0.0


def shadow_totals(prometheus_text: str) -> dict[str, float]:
    """strangler_shadow_<counter>_total summed over its labels, for each of COUNTERS."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    for line in prometheus_text.splitlines():
        if not line.startswith("strangler_shadow_"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        key = name.removeprefix("strangler_shadow_").removesuffix("_total")
        if key in totals and name.endswith("_total"):
            totals[key] += float(line.rsplit(" ", 1)[1])
    return totals


def rules_document(legacy_url: str, service_url: str, percent: int) -> dict:
    """One capability at stage shadow; noise sampling off so 100 % means one replay a request."""
    return {
        "version": 1,
        "backends": {"legacy": {"url": legacy_url, "timeout": "5s"},
                     "service": {"url": service_url, "timeout": "5s"}},
        "capabilities": [{
            "name": "catalog",
            "match": [{"path_template": "/catalog/items/{id}", "methods": ["GET", "HEAD"]}],
            "legacy": "legacy", "service": "service", "stage": "shadow", "writes": "legacy",
            "shadow": {"percent": percent, "sticky": False, "noise_percent": 0,
                       "timeout": "2s"}}],
        "default": "legacy",
    }


def start_proxy(name: str, workdir: Path, rules: dict) -> Proxy:
    slug = name.replace(" ", "-").replace("%", "pct")
    path = workdir / f"rules-{slug}.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    port, admin = free_port(), free_port()
    token = os.urandom(16).hex()
    log = workdir / f"{slug}.log"
    proc = spawn([str(strangler_command()), "proxy", "--rules", str(path),
                  "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                  "--workers", str(WORKERS),
                  "--shadow-store", f"sqlite:///{workdir / f'shadow-{slug}.sqlite3'}"], log,
                 env={"STRANGLER_ADMIN_TOKEN": token})
    return Proxy(Server(name, f"http://127.0.0.1:{port}", [proc], log),
                 f"http://127.0.0.1:{admin}", token)


def start_slow_upstream(workdir: Path) -> Server:
    port = free_port()
    log = workdir / "slow-upstream.log"
    proc = spawn([sys.executable, "-m", "benchmarks.slow_upstream",
                  "--listen", f"127.0.0.1:{port}", "--delay-ms", str(SLOW_MS)], log)
    return Server("slow upstream", f"http://127.0.0.1:{port}", [proc], log)


@dataclass(frozen=True)
class Sample:
    load: Load
    cpu_us_per_request: float


def sample(proxy: Proxy, connections: int, threads: int, seconds: float,
           pause_ms: int | None = None) -> Sample:
    before = cpu_seconds(proxy.server)
    load = run_wrk(proxy.server.url + BENCH_PATH, connections=connections, threads=threads,
                   seconds=seconds, pause_ms=pause_ms)
    if load.errors:
        raise RuntimeError(f"{proxy.server.name}: {load.errors} failed requests under load")
    return Sample(load, (cpu_seconds(proxy.server) - before) * 1e6 / load.requests)


@dataclass(frozen=True)
class Figures:
    """A proxy's figures over one part: medians of its rounds, and its counter increases."""
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    rounds: list[dict]
    shadow: dict[str, float]
    shadow_process_cpu_us_per_request: float = 0.0


def figures(name: str, samples: list[Sample], shadow: dict[str, float],
            shadow_cpu_s: float = 0.0) -> Figures:
    med = lambda key: statistics.median(key(s) for s in samples)  # noqa: E731
    requests = sum(s.load.requests for s in samples)
    return Figures(name, med(lambda s: s.load.rps), med(lambda s: s.load.p50_ms),
                   med(lambda s: s.load.p99_ms), med(lambda s: s.cpu_us_per_request),
                   [{"rps": s.load.rps, "p50_ms": s.load.p50_ms, "p99_ms": s.load.p99_ms,
                     "cpu_us_per_request": s.cpu_us_per_request} for s in samples], shadow,
                   shadow_cpu_s * 1e6 / requests)


def run_part(proxies: list[Proxy], rounds: int, connections: int, threads: int,
             pause_ms: int | None) -> list[Figures]:
    """Interleaved rounds (a burst from another tenant hits one round of each proxy), counters
    read before and after the whole part."""
    time.sleep(METRICS_SETTLE_S)
    before = [p.counters() for p in proxies]
    cpu_before = [p.shadow_cpu_seconds() for p in proxies]
    samples: list[list[Sample]] = [[] for _ in proxies]
    for number in range(1, rounds + 1):
        print(f"  round {number}/{rounds}", file=sys.stderr, flush=True)
        for proxy, mine in zip(proxies, samples):
            mine.append(sample(proxy, connections, threads, ROUND_SECONDS, pause_ms))
    cpu_after = [p.shadow_cpu_seconds() for p in proxies]
    time.sleep(METRICS_SETTLE_S)
    after = [p.counters() for p in proxies]
    return [figures(p.server.name, s, {k: a[k] - b[k] for k in COUNTERS}, c1 - c0)
            for p, s, b, a, c0, c1 in zip(proxies, samples, before, after, cpu_before, cpu_after)]


def run_control(off: Proxy, pause_ms: int, busy_us: float, every_us: float,
                workdir: Path) -> list[Figures]:
    """The 0 % proxy without and with the burner, in interleaved rounds."""
    plain: list[Sample] = []
    burnt: list[Sample] = []
    for number in range(1, ROUNDS + 1):
        print(f"  round {number}/{ROUNDS}", file=sys.stderr, flush=True)
        plain.append(sample(off, PACED_CONNECTIONS, 1, ROUND_SECONDS, pause_ms))
        burner = spawn([sys.executable, "-m", "benchmarks.cpu_burner", "--busy-us",
                        f"{busy_us:.1f}", "--every-us", f"{every_us:.1f}"], workdir / "burner.log")
        try:
            time.sleep(0.2)
            burnt.append(sample(off, PACED_CONNECTIONS, 1, ROUND_SECONDS, pause_ms))
        finally:
            Server("cpu burner", "", [burner]).stop()
    nothing = dict.fromkeys(COUNTERS, 0.0)
    return [figures("0% shadow", plain, nothing),
            figures(f"0% + {busy_us:.0f} us CPU/req burnt", burnt, nothing)]


def pause_for(rate: float) -> int:
    """The pause after each answer that makes PACED_CONNECTIONS ask at most about `rate` req/s
    (wrk's pause is whole milliseconds: rounded up, never faster than asked)."""
    return max(1, math.ceil(PACED_CONNECTIONS * 1000 / rate))


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="strangler-shadow-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        legacy = stack.enter_context(start_upstream(workdir / "legacy"))
        service = stack.enter_context(start_upstream(workdir / "service"))
        slow = stack.enter_context(start_slow_upstream(workdir))
        for upstream in (legacy, service, slow):
            wait_until_answers(upstream, BENCH_PATH)
        off, on, shed = (stack.enter_context(start_proxy(name, workdir, doc)) for name, doc in (
            ("0% shadow", rules_document(legacy.url, service.url, 0)),
            ("100% shadow", rules_document(legacy.url, service.url, 100)),
            (f"100% to a {SLOW_MS} ms service", rules_document(legacy.url, slow.url, 100))))
        for proxy in (off, on, shed):
            wait_until_answers(proxy.server, BENCH_PATH)
            check_answer(proxy.server.url + BENCH_PATH)
            sample(proxy, SATURATION_CONNECTIONS, WORKERS, 2)   # warm-up
        print("saturation", file=sys.stderr, flush=True)
        # The median of a few runs: one burst from another tenant must not set the paced rate.
        peak = statistics.median(sample(off, SATURATION_CONNECTIONS, WORKERS, 2).load.rps
                                 for _ in range(3))
        pause_ms = pause_for(LOAD_SHARE * peak)
        print(f"paced: {PACED_CONNECTIONS} connections pausing {pause_ms} ms", file=sys.stderr)
        paced = run_part([off, on], ROUNDS, PACED_CONNECTIONS, 1, pause_ms)
        print("overload", file=sys.stderr, flush=True)
        overload = run_part([off, on, shed], OVERLOAD_ROUNDS, OVERLOAD_CONNECTIONS, WORKERS, None)
        print("control", file=sys.stderr, flush=True)
        busy_us = paced[1].shadow_process_cpu_us_per_request
        control = run_control(off, pause_ms, busy_us, 1e6 / paced[1].rps, workdir)
    return {"peak_rps": peak, "pause_ms": pause_ms, "paced": paced, "overload": overload,
            "control": control}


def ratios(base: Figures, other: Figures) -> dict[str, float]:
    return {"p50": other.p50_ms / base.p50_ms, "p99": other.p99_ms / base.p99_ms,
            "rps": other.rps / base.rps,
            "cpu_us_per_request": other.cpu_us_per_request / base.cpu_us_per_request}


def verdicts(paced: list[Figures], overload: list[Figures]) -> dict[str, bool]:
    """Paced: 100 % within the bars of 0 %. Overload, for each shadow target: shadows were shed
    and clients stay within the same bars of the 0 % proxy's overload figures."""
    low = ratios(paced[0], paced[1])
    out = {"paced p50": low["p50"] <= BARS["p50"], "paced p99": low["p99"] <= BARS["p99"]}
    for target, figures_ in (("fast target", overload[1]), ("slow target", overload[2])):
        shed = ratios(overload[0], figures_)
        out[f"overload dropped ({target})"] = figures_.shadow["dropped"] > 0
        out[f"overload p50 ({target})"] = shed["p50"] <= BARS["p50"]
        out[f"overload p99 ({target})"] = shed["p99"] <= BARS["p99"]
    return out


def render(found: dict, passed: dict[str, bool]) -> str:
    paced, overload, control = found["paced"], found["overload"], found["control"]
    lines = [f"shadow benchmark: {WORKERS} strangler workers; {os.cpu_count()} CPUs; "
             f"load avg {os.getloadavg()[0]:.2f}",
             f"0% shadow peak {found['peak_rps']:.0f} req/s "
             f"(wrk -c{SATURATION_CONNECTIONS}, median of 3); "
             f"paced: wrk -c{PACED_CONNECTIONS} pausing {found['pause_ms']} ms "
             f"({paced[0].rps / found['peak_rps']:.0%} of the peak), {ROUNDS} rounds; "
             f"overload: wrk -c{OVERLOAD_CONNECTIONS}, {OVERLOAD_ROUNDS} rounds; "
             f"{ROUND_SECONDS}s rounds, medians shown", "",
             f"{'part':<9}{'proxy':<28}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>11}"
             f"{'submitted':>10}{'compared':>9}{'dropped':>9}{'errors':>7}"]
    for part, rows in (("paced", paced), ("overload", overload), ("control", control)):
        for f in rows:
            s = f.shadow
            lines.append(f"{part:<9}{f.name:<28}{f.rps:>8.0f}{f.p50_ms:>9.3f}{f.p99_ms:>9.3f}"
                         f"{f.cpu_us_per_request:>11.0f}{s['submitted']:>10.0f}"
                         f"{s['compared']:>9.0f}{s['dropped']:>9.0f}{s['errors']:>7.0f}")
    lines.append("")
    for label, base, other in (("paced 100%/0%", paced[0], paced[1]),
                               ("overload 100%/0%", overload[0], overload[1]),
                               (f"overload 100% to {SLOW_MS} ms/0%", overload[0], overload[2])):
        r = ratios(base, other)
        lines.append(f"{label:<28} p50 {r['p50']:.3f}x  p99 {r['p99']:.3f}x  "
                     f"req/s {r['rps']:.3f}x  CPU/req {r['cpu_us_per_request']:.3f}x")
    r = ratios(control[0], control[1])
    lines.append(f"{'control burnt/plain':<28} p50 {r['p50']:.3f}x  p99 {r['p99']:.3f}x  "
                 f"(the shadow process spent {paced[1].shadow_process_cpu_us_per_request:.0f} "
                 "us CPU/req in the paced part; the burner spends as much with no shadowing)")
    lines.append(f"bars: p50 <= {BARS['p50']}x, p99 <= {BARS['p99']}x")
    lines += [f"  {name:<32}{'pass' if ok else 'FAIL'}" for name, ok in passed.items()]
    return "\n".join(lines)


def main() -> int:
    """Run the three parts, print the table, ratios and verdicts, save JSON; exit 1 on a miss."""
    started = datetime.now(timezone.utc)
    env_before = environment()
    found = run()
    passed = verdicts(found["paced"], found["overload"])
    print(render(found, passed))
    path = write_result("shadow", {
        "benchmark": "shadow", "started": started.isoformat(),
        "config": {"workers": WORKERS, "path": BENCH_PATH, "load_share": LOAD_SHARE,
                   "paced_connections": PACED_CONNECTIONS, "pause_ms": found["pause_ms"],
                   "overload_connections": OVERLOAD_CONNECTIONS, "rounds": ROUNDS,
                   "overload_rounds": OVERLOAD_ROUNDS, "round_seconds": ROUND_SECONDS,
                   "slow_ms": SLOW_MS},
        "environment": env_before, "loadavg_after": os.getloadavg(),
        "peak_rps": found["peak_rps"],
        "paced": [asdict(f) for f in found["paced"]],
        "overload": [asdict(f) for f in found["overload"]],
        "control": [asdict(f) for f in found["control"]],
        "ratios": {"paced": ratios(found["paced"][0], found["paced"][1]),
                   "overload": ratios(found["overload"][0], found["overload"][1]),
                   "overload_slow_target": ratios(found["overload"][0], found["overload"][2]),
                   "control": ratios(found["control"][0], found["control"][1])},
        "bars": BARS, "passed": passed,
    })
    print(f"\nresult: {path}")
    return 0 if all(passed.values()) else 1
