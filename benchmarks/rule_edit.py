"""What safe rule edits cost, and how fast proxies follow them: `python -m benchmarks.rule_edit`.

1. Edit cost, peers in the same run on a copy of routing_rules/demo.yaml, as ratios against the
   naive peer:
   - naive:   yaml.safe_load, set the percent, yaml.safe_dump over the file in place (loses the
              comments, no validation, a reader can see half a file)
   - atomic:  the same, written through temp + fsync + os.replace
   - safe:    operate.actions.set_percent (round trip keeping comments, compile before and
              after, compare-and-swap under flock, atomic write, history with both contents)
2. Propagation: N `strangler proxy` processes on the same file; the time from set_percent
   returning until every proxy's /admin/status shows the new version, against the peer of
   pushing the same change with POST /admin/reload to each proxy.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from operate.actions import set_percent
from operate.rule_edit import read_rules, replace_atomically

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "routing_rules" / "demo.yaml"


def _canary(path: Path) -> None:
    text = DEMO.read_text().replace("stage: shadow", "stage: canary")
    for port in ("8001", "8002"):
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{_free_port()}")
    path.write_text(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def naive(path: Path, percent: int) -> None:
    doc = yaml.safe_load(path.read_text())
    doc["capabilities"][0]["rollout"]["percent"] = percent
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def atomic(path: Path, percent: int) -> None:
    doc = yaml.safe_load(path.read_text())
    doc["capabilities"][0]["rollout"]["percent"] = percent
    replace_atomically(path, yaml.safe_dump(doc, sort_keys=False).encode())


def safe(path: Path, percent: int) -> None:
    set_percent(path, "catalog", percent, who="bench", why="bench")


def edit_cost(tmp: Path, edits: int) -> None:
    times: dict[str, float] = {}
    for name, fn in (("naive", naive), ("atomic", atomic), ("safe", safe)):
        path = tmp / name / "demo.yaml"
        path.parent.mkdir()
        _canary(path)
        start = time.perf_counter()
        for i in range(edits):
            fn(path, 1 + i % 99)
        times[name] = (time.perf_counter() - start) / edits
    print(f"edit cost ({edits} edits each)\n{'peer':<8}{'ms/edit':>10}{'vs naive':>10}")
    for name, t in times.items():
        print(f"{name:<8}{t * 1000:>10.2f}{t / times['naive']:>9.1f}x")


def _start_proxy(rules: Path, log: Path, token: str) -> tuple[subprocess.Popen, str]:
    admin = _free_port()
    env = {**os.environ, "STRANGLER_ADMIN_TOKEN": token}
    proc = subprocess.Popen(
        [sys.executable, "-m", "strangler", "proxy", "--rules", str(rules), "--listen",
         f"127.0.0.1:{_free_port()}", "--admin", f"127.0.0.1:{admin}", "--workers", "1",
         "--no-shadow"], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{admin}"


def _version(client: httpx.Client, admin: str) -> str | None:
    try:
        return client.get(f"{admin}/admin/status").json()["rules"]["version"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _until_all(client: httpx.Client, admins: list[str], version: str, start: float) -> float:
    while any(_version(client, a) != version for a in admins):
        if time.perf_counter() - start > 60:
            raise SystemExit("a proxy did not follow the rules within 60 s")
        time.sleep(0.01)
    return time.perf_counter() - start


def propagation(tmp: Path, proxies: int, rounds: int) -> None:
    rules = tmp / "shared" / "demo.yaml"
    rules.parent.mkdir()
    _canary(rules)
    token = secrets.token_hex(16)
    procs = [_start_proxy(rules, tmp / f"proxy{i}.log", token) for i in range(proxies)]
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=5) as client:
            admins = [a for _, a in procs]
            _until_all(client, admins, read_rules(rules).version, time.perf_counter())
            watched, pushed = [], []
            for i in range(rounds):
                start = time.perf_counter()
                change = set_percent(rules, "catalog", 10 + i, who="bench", why="bench")
                watched.append(_until_all(client, admins, change.after, start))
                start = time.perf_counter()
                change = set_percent(rules, "catalog", 60 + i, who="bench", why="bench")
                for a in admins:
                    client.post(f"{a}/admin/reload")
                pushed.append(_until_all(client, admins, change.after, start))
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(15)
    base = statistics.median(pushed)
    print(f"\npropagation to {proxies} proxies ({rounds} rounds; watcher polls every 1 s)")
    print(f"{'peer':<22}{'median s':>10}{'max s':>8}{'vs push':>9}")
    for name, values in (("file watch", watched), ("POST /admin/reload", pushed)):
        print(f"{name:<22}{statistics.median(values):>10.3f}{max(values):>8.3f}"
              f"{statistics.median(values) / base:>8.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rule_edit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=100, help="edits per peer (default 100)")
    parser.add_argument("--proxies", type=int, default=2, help="proxy processes (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="propagation rounds (default 5)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rule-edit-"))
    try:
        edit_cost(tmp, args.edits)
        propagation(tmp, args.proxies, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
