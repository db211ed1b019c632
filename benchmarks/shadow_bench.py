"""The shadow benchmark: what 100 % shadowing costs the client, and that overload sheds shadows.

One capability at stage `shadow`: legacy and service are two distinct nginx upstreams answering
the same ~500-byte JSON, so every shadow compares equal. Strangler proxies run side by side with
that capability at 0 % and at 100 % shadow (and, for the overload part, 100 % towards a service
that answers after SLOW_MS), all measured in interleaved rounds of one run:

1. saturation: the 0 % proxy's closed-loop peak (wrk -c32), to fix the paced rate;
2. paced load at about LOAD_SHARE of that peak (wrk -c4, each connection pausing between
   answers): client p50 and p99 at 100 % against 0 % — bars p50 <= 1.10x, p99 <= 1.25x.
   PACED_ROUNDS rounds of one second, each "0 %, 100 %, 0 % again": this shared machine drifts
   by 10-20 % from one second to the next, so each 100 % round is held against the mean of the
   0 % rounds just before and after it, and the verdict takes the median of those paired
   ratios. The 0 % proxy against itself (after/before) is printed too: the ruler's own error;
3. overload (closed loop, wrk -c64): client figures at 0 %, at 100 % towards the fast service
   (shadows shed because the worker is saturated) and at 100 % towards the slow one (shed as its
   queue fills too) — the shadow counters (submitted / compared / dropped, from each proxy's
   /metrics) show they are, and the client p50/p99 ratios against the 0 % proxy's overload
   figures show what shedding leaves the client;
4. control (context, no bar), the 0 % proxy alone against the 0 % proxy beside
   - benchmarks.cpu_burner spending, at the shadow process's niceness, the CPU per request the
     shadow process was measured to spend in part 2: the price of that much background CPU on
     this machine, whoever spends it;
   - wrk (niced like the shadow process) asking the shadow target at the paced rate: the price
     of the target's own work on these shared cores (in production it has its own), so what is
     left of part 2's cost is the proxy's shadow path.
"""
from __future__ import annotations

import json
import math
import operator
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
from typing import Callable

import yaml

from benchmarks.processes import (Server, cpu_seconds, free_port, process_cpu_seconds, spawn,
                                  wait_until_answers)
from benchmarks.proxy_bench import check_answer, environment, strangler_command
from benchmarks.result_files import write_result
from benchmarks.upstream import start_upstream
from benchmarks.wrk import PACING_SCRIPT, Load, run_wrk, wrk_argv
from proxy.shadow.process import SHADOW_NICENESS

WORKERS = 2
BENCH_PATH = "/catalog/items/7"
SATURATION_CONNECTIONS = 32
LOAD_SHARE = 0.3            # the paced rate, as a share of the 0 % proxy's peak
PACED_CONNECTIONS = 4
OVERLOAD_CONNECTIONS = 64
PACED_ROUNDS = 20           # rounds of "0 %, 100 %, 0 % again"; medians of paired ratios count
PACED_ROUND_SECONDS = 1     # wrk's shortest run: short rounds follow the machine's drift
CONTROL_ROUNDS = 8          # rounds of "plain, burner, plain, target load, plain"
OVERLOAD_ROUNDS = 3
OVERLOAD_ROUND_SECONDS = 3
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


def run_rounds(schedule: list[Proxy], rounds: int, connections: int, threads: int,
               seconds: float, pause_ms: int | None) -> list[list[Sample]]:
    """`rounds` rounds, each sampling the proxies of `schedule` in its order (one proxy may
    appear twice); the samples of each schedule position, round by round."""
    samples: list[list[Sample]] = [[] for _ in schedule]
    for number in range(1, rounds + 1):
        print(f"  round {number}/{rounds}", file=sys.stderr, flush=True)
        for proxy, mine in zip(schedule, samples):
            mine.append(sample(proxy, connections, threads, seconds, pause_ms))
    return samples


def run_part(proxies: list[Proxy], schedule: list[int], rounds: int, connections: int,
             threads: int, seconds: float,
             pause_ms: int | None) -> tuple[list[Figures], list[list[Sample]]]:
    """Interleaved rounds over `schedule` (indexes into `proxies`): a burst from another tenant
    hits one round of each. Counters and shadow CPU are read before and after the whole part.
    Figures per proxy over all its samples, and the samples by schedule position."""
    time.sleep(METRICS_SETTLE_S)
    before = [p.counters() for p in proxies]
    cpu_before = [p.shadow_cpu_seconds() for p in proxies]
    by_position = run_rounds([proxies[i] for i in schedule], rounds, connections, threads,
                             seconds, pause_ms)
    cpu_after = [p.shadow_cpu_seconds() for p in proxies]
    time.sleep(METRICS_SETTLE_S)
    after = [p.counters() for p in proxies]
    found = []
    for index, proxy in enumerate(proxies):
        mine = [s for position, samples in zip(schedule, by_position) if position == index
                for s in samples]
        found.append(figures(proxy.server.name, mine,
                             {k: after[index][k] - before[index][k] for k in COUNTERS},
                             cpu_after[index] - cpu_before[index]))
    return found, by_position


def _paired_median(pairs: list[tuple[Sample, float]], field: str,
                   compare: Callable[[float, float], float]) -> float:
    return statistics.median(compare(getattr(s.load, field), base) for s, base in pairs)


def paired(before: list[Sample], during: list[Sample], after: list[Sample],
           compare: Callable[[float, float], float] = operator.truediv) -> dict[str, float]:
    """Median over rounds of each `during` figure against the mean of the same figure in the
    rounds just before and just after it: the machine's drift between rounds cancels. By
    default a ratio; `operator.sub` gives the time added (ms), what carries over to a legacy
    whose own answers take longer than this benchmark's nginx."""
    return {key: _paired_median([(d, (getattr(b.load, field) + getattr(a.load, field)) / 2)
                                 for b, d, a in zip(before, during, after)], field, compare)
            for key, field in (("p50", "p50_ms"), ("p99", "p99_ms"))}


def ruler(before: list[Sample], after: list[Sample]) -> dict[str, float]:
    """The same proxy measured twice a round (after/before): what the ruler itself reads."""
    return {key: _paired_median([(a, getattr(b.load, field)) for b, a in zip(before, after)],
                                field, operator.truediv)
            for key, field in (("p50", "p50_ms"), ("p99", "p99_ms"))}


class Beside:
    """A background process started before a sample and stopped after it."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log

    def sample(self, proxy: Proxy, pause_ms: int) -> Sample:
        process = spawn(self.argv, self.log)
        try:
            time.sleep(0.2)             # started and settled before the client load begins
            return sample(proxy, PACED_CONNECTIONS, 1, PACED_ROUND_SECONDS, pause_ms)
        finally:
            Server(self.name, "", [process]).stop()


def run_control(off: Proxy, pause_ms: int, busy_us: float, every_us: float,
                target_url: str, workdir: Path) -> dict:
    """The 0 % proxy alone, beside the burner, alone, beside a paced load on the shadow target,
    alone: each background against the mean of the plain rounds around it."""
    burner = Beside("cpu burner", [sys.executable, "-m", "benchmarks.cpu_burner", "--busy-us",
                                   f"{busy_us:.1f}", "--every-us", f"{every_us:.1f}"],
                    workdir / "burner.log")
    # The shadow target asked at the paced rate by wrk (C, one thread), at the shadow
    # process's niceness: the target's own work plus about the least a client can spend.
    target = Beside("target load", ["nice", "-n", str(SHADOW_NICENESS), *wrk_argv(
        target_url + BENCH_PATH, str(PACING_SCRIPT), connections=PACED_CONNECTIONS, threads=1,
        seconds=PACED_ROUND_SECONDS + 5, pause_ms=pause_ms)], workdir / "target-load.log")
    plain: list[list[Sample]] = [[], [], []]
    burnt: list[Sample] = []
    loaded: list[Sample] = []
    for number in range(1, CONTROL_ROUNDS + 1):
        print(f"  round {number}/{CONTROL_ROUNDS}", file=sys.stderr, flush=True)
        plain[0].append(sample(off, PACED_CONNECTIONS, 1, PACED_ROUND_SECONDS, pause_ms))
        burnt.append(burner.sample(off, pause_ms))
        plain[1].append(sample(off, PACED_CONNECTIONS, 1, PACED_ROUND_SECONDS, pause_ms))
        loaded.append(target.sample(off, pause_ms))
        plain[2].append(sample(off, PACED_CONNECTIONS, 1, PACED_ROUND_SECONDS, pause_ms))
    nothing = dict.fromkeys(COUNTERS, 0.0)
    return {"figures": [figures("0% shadow", [s for part in plain for s in part], nothing),
                        figures(f"0% + {busy_us:.0f} us CPU/req burnt", burnt, nothing),
                        figures("0% + target asked by wrk", loaded, nothing)],
            "burnt": paired(plain[0], burnt, plain[1]),
            "target_load": paired(plain[1], loaded, plain[2])}


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
        paced, (before, during, after) = run_part(
            [off, on], [0, 1, 0], PACED_ROUNDS, PACED_CONNECTIONS, 1, PACED_ROUND_SECONDS,
            pause_ms)
        print("overload", file=sys.stderr, flush=True)
        overload, _ = run_part([off, on, shed], [0, 1, 2], OVERLOAD_ROUNDS, OVERLOAD_CONNECTIONS,
                               WORKERS, OVERLOAD_ROUND_SECONDS, None)
        print("control", file=sys.stderr, flush=True)
        busy_us = paced[1].shadow_process_cpu_us_per_request
        control = run_control(off, pause_ms, busy_us, 1e6 / paced[1].rps, service.url, workdir)
    return {"peak_rps": peak, "pause_ms": pause_ms, "paced": paced,
            "paced_paired": paired(before, during, after), "paced_ruler": ruler(before, after),
            "paced_added_ms": paired(before, during, after, operator.sub),
            "overload": overload, "control": control}


def ratios(base: Figures, other: Figures) -> dict[str, float]:
    return {"p50": other.p50_ms / base.p50_ms, "p99": other.p99_ms / base.p99_ms,
            "rps": other.rps / base.rps,
            "cpu_us_per_request": other.cpu_us_per_request / base.cpu_us_per_request}


def verdicts(paced_paired: dict[str, float], overload: list[Figures]) -> dict[str, bool]:
    """Paced: the paired ratios of 100 % to 0 % within the bars. Overload, for each shadow
    target: shadows were shed and clients stay within the same bars of the 0 % proxy's
    overload figures."""
    out = {"paced p50": paced_paired["p50"] <= BARS["p50"],
           "paced p99": paced_paired["p99"] <= BARS["p99"]}
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
             f"({paced[0].rps / found['peak_rps']:.0%} of the peak), {PACED_ROUNDS} rounds of "
             f"{PACED_ROUND_SECONDS}s (0%, 100%, 0% again); overload: wrk "
             f"-c{OVERLOAD_CONNECTIONS}, {OVERLOAD_ROUNDS} rounds of {OVERLOAD_ROUND_SECONDS}s; "
             "medians of the rounds shown", "",
             f"{'part':<9}{'proxy':<28}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>11}"
             f"{'submitted':>10}{'compared':>9}{'dropped':>9}{'errors':>7}"]
    for part, rows in (("paced", paced), ("overload", overload), ("control", control["figures"])):
        for f in rows:
            s = f.shadow
            lines.append(f"{part:<9}{f.name:<28}{f.rps:>8.0f}{f.p50_ms:>9.3f}{f.p99_ms:>9.3f}"
                         f"{f.cpu_us_per_request:>11.0f}{s['submitted']:>10.0f}"
                         f"{s['compared']:>9.0f}{s['dropped']:>9.0f}{s['errors']:>7.0f}")
    lines.append("")
    r = ratios(paced[0], paced[1])
    lines.append(f"{'paced 100%/0%':<28} p50 {found['paced_paired']['p50']:.3f}x  "
                 f"p99 {found['paced_paired']['p99']:.3f}x  (paired; medians alone: p50 "
                 f"{r['p50']:.3f}x p99 {r['p99']:.3f}x; req/s {r['rps']:.3f}x, CPU/req "
                 f"{r['cpu_us_per_request']:.3f}x)")
    added = found["paced_added_ms"]
    lines.append(f"{'paced 100% - 0%':<28} p50 {added['p50'] * 1000:+.0f} us  "
                 f"p99 {added['p99'] * 1000:+.0f} us  (paired: the client time shadowing adds)")
    lines.append(f"{'paced 0%/0% (the ruler)':<28} p50 {found['paced_ruler']['p50']:.3f}x  "
                 f"p99 {found['paced_ruler']['p99']:.3f}x")
    for label, base, other in (("overload 100%/0%", overload[0], overload[1]),
                               (f"overload 100% to {SLOW_MS} ms/0%", overload[0], overload[2])):
        r = ratios(base, other)
        lines.append(f"{label:<28} p50 {r['p50']:.3f}x  p99 {r['p99']:.3f}x  "
                     f"req/s {r['rps']:.3f}x  CPU/req {r['cpu_us_per_request']:.3f}x")
    burnt, loaded = control["burnt"], control["target_load"]
    lines.append(f"{'control burnt/plain':<28} p50 {burnt['p50']:.3f}x  p99 {burnt['p99']:.3f}x  "
                 f"(the shadow process spent {paced[1].shadow_process_cpu_us_per_request:.0f} "
                 "us CPU/req in the paced part; the burner spends as much with no shadowing)")
    lines.append(f"{'control target load/plain':<28} p50 {loaded['p50']:.3f}x  "
                 f"p99 {loaded['p99']:.3f}x  (wrk asks the shadow target at the paced rate)")
    lines.append(f"bars: p50 <= {BARS['p50']}x, p99 <= {BARS['p99']}x")
    lines += [f"  {name:<32}{'pass' if ok else 'FAIL'}" for name, ok in passed.items()]
    return "\n".join(lines)


def main() -> int:
    """Run the four parts, print the table, ratios and verdicts, save JSON; exit 1 on a miss."""
    started = datetime.now(timezone.utc)
    env_before = environment()
    found = run()
    passed = verdicts(found["paced_paired"], found["overload"])
    print(render(found, passed))
    control = found["control"]
    path = write_result("shadow", {
        "benchmark": "shadow", "started": started.isoformat(),
        "config": {"workers": WORKERS, "path": BENCH_PATH, "load_share": LOAD_SHARE,
                   "paced_connections": PACED_CONNECTIONS, "pause_ms": found["pause_ms"],
                   "paced_rounds": PACED_ROUNDS, "paced_round_seconds": PACED_ROUND_SECONDS,
                   "overload_connections": OVERLOAD_CONNECTIONS,
                   "overload_rounds": OVERLOAD_ROUNDS,
                   "overload_round_seconds": OVERLOAD_ROUND_SECONDS,
                   "control_rounds": CONTROL_ROUNDS, "slow_ms": SLOW_MS},
        "environment": env_before, "loadavg_after": os.getloadavg(),
        "peak_rps": found["peak_rps"],
        "paced": [asdict(f) for f in found["paced"]],
        "overload": [asdict(f) for f in found["overload"]],
        "control": [asdict(f) for f in control["figures"]],
        "paced_added_ms": found["paced_added_ms"],
        "ratios": {"paced_paired": found["paced_paired"], "paced_ruler": found["paced_ruler"],
                   "paced_medians": ratios(found["paced"][0], found["paced"][1]),
                   "overload": ratios(found["overload"][0], found["overload"][1]),
                   "overload_slow_target": ratios(found["overload"][0], found["overload"][2]),
                   "control_burnt": control["burnt"],
                   "control_target_load": control["target_load"]},
        "bars": BARS, "passed": passed,
    })
    print(f"\nresult: {path}")
    return 0 if all(passed.values()) else 1
