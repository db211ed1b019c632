"""Drive wrk against one URL and return its numbers as a value (via wrk_report.lua)."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPORT_SCRIPT = Path(__file__).with_name("wrk_report.lua")
PACING_SCRIPT = Path(__file__).with_name("wrk_pacing.lua")


@dataclass(frozen=True)
class Load:
    """One wrk run's result. Latencies in milliseconds."""
    requests: int
    seconds: float
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if not binary:
        raise RuntimeError("wrk is not installed; run scripts/bench-deps.sh (or `make bench`)")
    return binary


def wrk_argv(url: str, script: str, *, connections: int, threads: int, seconds: float,
             pause_ms: int | None = None) -> list[str]:
    argv = [wrk_binary(), f"-t{min(threads, connections)}", f"-c{connections}",
            f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", script, url]
    return argv + ["--", str(pause_ms)] if pause_ms is not None else argv


def run_wrk(url: str, *, connections: int, threads: int, seconds: float,
            pause_ms: int | None = None) -> Load:
    """`connections` keep-alive connections, each sending back to back (closed loop), or
    pausing `pause_ms` after every answer (a roughly fixed, modest rate for latency runs)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(REPORT_SCRIPT.read_text())
        if pause_ms is not None:
            script.write(PACING_SCRIPT.read_text())
        script.flush()
        argv = wrk_argv(url, script.name, connections=connections, threads=threads,
                        seconds=seconds, pause_ms=pause_ms)
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no report for {url}:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    secs = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    return Load(requests=raw["requests"], seconds=secs, errors=sum(raw["errors"].values()),
                rps=raw["requests"] / secs, p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000,
                p99_ms=lat["p99"] / 1000, mean_ms=lat["mean"] / 1000)
