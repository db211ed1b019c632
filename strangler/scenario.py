"""One whole extraction of the catalog, end to end, under load: the steps and the checks.

Real processes on loopback ports: the legacy shop, the catalog service (a "release" that can be
killed, broken and fixed), the proxy with two workers and the CDC pipeline in both directions.
While `strangler.load` browses, fills carts and checks out through the proxy, an operator-style
script walks the catalog legacy -> shadow -> canary 1/5/25 % -> write switch -> cutover ->
retire with the real operator functions (`operate.actions`, `operate.promote`) and the real
`strangler cdc|history` commands, edits prices through the proxy on both sides of the write
switch, crashes the service once, deploys a broken release the proxy must roll back by itself,
then a fixed one. `checks()` says what the run proved; `tests/strangler/test_extraction_scenario.py`
asserts it and `strangler demo --scenario` prints it.

Every wait is a condition with a bounded timeout (`ScenarioError` names what did not happen).
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from extracted_services.catalog.fault import FAULT_ENV
from operate import actions
from operate.actions import Actor
from strangler.load import Load, LoadReport

ROOT = Path(__file__).resolve().parents[1]
RULES_TEMPLATE = ROOT / "routing_rules" / "scenario" / "catalog.yaml"
CDC_TEMPLATE = ROOT / "routing_rules" / "cdc" / "catalog.yaml"
CAPABILITY = "catalog"
WHO = "scenario"
BROKEN_RELEASE = "error-rate:0.5"     # the broken release fails half its reads
MIN_MATCH = 99.5                      # shadow match rate (%) needed before canary and cutover
_PR_SET_PDEATHSIG = 1                 # from <sys/prctl.h>
MIN_COMPARED = 300                    # shadow comparisons needed before judging the match rate


class ScenarioError(Exception):
    """A step's condition did not hold within its bound: names the step and what was seen."""


@dataclass(frozen=True)
class Stores:
    """Where both stores live and how CDC events travel between them."""
    legacy_url: str
    service_url: str
    kafka_bootstrap: str | None = None   # None: the embedded transport (SQLite, no broker)
    cdc_name: str = CAPABILITY           # names the slots, origins and topics: unique per run


@dataclass
class Step:
    name: str
    seconds: float
    figures: str


@dataclass
class Outcome:
    """What the run recorded, for the checks."""
    steps: list[Step] = field(default_factory=list)
    load: LoadReport | None = None
    shadow_before_canary: dict[str, Any] | None = None
    shadow_before_cutover: dict[str, Any] | None = None    # the whole run, broken release too
    shadow_fixed_release: dict[str, Any] | None = None     # from the fixed release to cutover
    price_edits: dict[int, float] = field(default_factory=dict)   # product -> last price set
    verify_code: int | None = None
    verify_output: str = ""
    prices_seen: dict[str, dict[int, float]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_text: str = ""
    fallbacks: dict[str, int] = field(default_factory=dict)   # step -> reads legacy covered


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the scenario dies, even by SIGKILL, so an
    interrupted run leaves nothing holding ports or replication slots."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One `strangler ...` child process with its log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name, self.argv, self.log, self.env = name, argv, log, env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Child":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "strangler", *self.argv], cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (in-flight requests finish), SIGKILL after TIMEOUT."""
        if not self.running():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _strangler(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "strangler", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


async def _until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    """Await CHECK() (sync or async) until it returns something truthy, at most TIMEOUT s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            last = exc
            result = None
        else:
            result = last
        if result:
            return result
        if time.monotonic() > deadline:
            raise ScenarioError(f"{what}: not within {timeout:g} s (last seen: {last!r:.300})")
        await asyncio.sleep(every)


class Scenario:
    """Set up with `async with Scenario(...) as s`, then `await s.run()`; `s.outcome` holds
    what was recorded. SAY gets one line per step as it happens."""

    def __init__(self, workdir: Path, stores: Stores, *, products: int = 40,
                 users: int = 300, concurrency: int = 6, say: Callable[[str], None] = print):
        self.workdir = workdir
        self.stores = stores
        self.products = products
        self.users, self.concurrency = users, concurrency
        self.say = say
        self.outcome = Outcome()
        self.token = secrets.token_hex(16)
        self.ports = {name: free_port() for name in ("legacy", "catalog", "proxy", "admin")}
        self.rules = workdir / "rules" / "catalog.yaml"
        self.cdc_config = workdir / "cdc-catalog.yaml"
        self.shadow_store = f"sqlite:///{workdir / 'shadow.sqlite3'}"
        self.children: dict[str, Child] = {}
        self._t0 = time.monotonic()
        self._step_t = self._t0
        self._load: Load | None = None
        self._rolled_back_after = 0          # history id before the broken release

    # ---- set-up and tear-down -----------------------------------------------------------------

    async def __aenter__(self) -> "Scenario":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_rules()
        self._write_cdc_config()
        try:
            await self._start_stack()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for name in ("proxy", "cdc", "catalog", "legacy"):
            child = self.children.get(name)
            if child is not None:
                await asyncio.to_thread(child.stop)

    def _write_rules(self) -> None:
        doc = yaml.safe_load(RULES_TEMPLATE.read_text())
        doc["backends"]["legacy"]["url"] = f"http://127.0.0.1:{self.ports['legacy']}"
        doc["backends"]["catalog"]["url"] = f"http://127.0.0.1:{self.ports['catalog']}"
        self.rules.parent.mkdir(parents=True, exist_ok=True)
        self.rules.write_text(yaml.safe_dump(doc, sort_keys=False))

    def _write_cdc_config(self) -> None:
        """The catalog's CDC config (its table mapping as is) on this run's stores and transport."""
        tables = CDC_TEMPLATE.read_text().split("\ntables:\n", 1)[1]
        s = self.stores
        transport = (f"  kind: kafka\n  bootstrap: {s.kafka_bootstrap}\n  partitions: 3\n"
                     if s.kafka_bootstrap else
                     f"  kind: embedded\n  path: {self.workdir / 'cdc-log.db'}\n")
        self.cdc_config.write_text(
            f"version: 1\ncapability: {s.cdc_name}\n"
            f"legacy:\n  url: {s.legacy_url}\n  topic_prefix: {s.cdc_name}_legacy\n"
            f"service:\n  url: {s.service_url}\n  topic_prefix: {s.cdc_name}_catalog\n"
            f"writes: legacy\ntransport:\n{transport}apply:\n  batch_size: 500\n"
            f"tables:\n{tables}")

    def _child(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, argv, self.workdir / f"{name}.log", env)
        self.children[name] = child
        return child.start()

    async def _healthy(self, name: str, port: int, timeout: float = 60) -> None:
        child = self.children[name]

        async def up() -> bool:
            if not child.running():
                raise ScenarioError(f"the {name} exited while starting:\n{child.tail()}")
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/healthz",
                                       timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    return resp.status == 200
        await _until(f"the {name} answering /healthz", up, timeout, every=0.1)

    def _start_release(self, fault: str | None = None) -> Child:
        env = {FAULT_ENV: fault} if fault else {FAULT_ENV: ""}
        return self._child("catalog", ["catalog", "serve", "--port", str(self.ports["catalog"]),
                                       "--database-url", self.stores.service_url,
                                       "--seed", str(self.products)], env)

    async def _start_stack(self) -> None:
        self._child("legacy", ["legacy", "serve", "--port", str(self.ports["legacy"]),
                               "--database-url", self.stores.legacy_url,
                               "--seed", str(self.products)])
        self._start_release()
        await self._healthy("legacy", self.ports["legacy"])
        await self._healthy("catalog", self.ports["catalog"])
        self._child("cdc", ["cdc", "run", CAPABILITY, "--config", str(self.cdc_config),
                            "--direction", "both"])
        await self._drain("to_service", timeout=90)
        self._child("proxy", ["proxy", "--rules", str(self.rules), "--workers", "2",
                              "--listen", f"127.0.0.1:{self.ports['proxy']}",
                              "--admin", f"127.0.0.1:{self.ports['admin']}",
                              "--shadow-store", self.shadow_store],
                    {"STRANGLER_ADMIN_TOKEN": self.token})
        await self._healthy("proxy", self.ports["proxy"])

    # ---- what the steps use -------------------------------------------------------------------

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin']}"

    def step(self, name: str, figures: str = "") -> None:
        now = time.monotonic()
        self.outcome.steps.append(Step(name, now - self._step_t, figures))
        load = self._load.report if self._load else None
        traffic = f" | load {load.requests} req, {load.failed} failed" if load else ""
        self.say(f"[{now - self._t0:6.1f} s] {name:<34} {figures}{traffic}")
        self._step_t = now

    async def _admin(self, path: str) -> Any:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"}) as s:
            async with s.get(self.admin_url + path,
                             timeout=aiohttp.ClientTimeout(total=10)) as resp:
                resp.raise_for_status()
                return await resp.json()

    async def _act(self, func: Callable[..., Any], *args: Any, why: str) -> Any:
        """One operator action (blocking file I/O) off the event loop, then wait until the
        proxy serves the rules it wrote."""
        change = await asyncio.to_thread(func, self.rules, CAPABILITY, *args, Actor(WHO, why))
        await self._serving(change.after)
        return change

    async def _serving(self, version: str, timeout: float = 20) -> None:
        async def serves() -> bool:
            return (await self._admin("/admin/status"))["rules"]["version"] == version
        await _until(f"the proxy serving rules {version}", serves, timeout)

    def _gates(self, status: dict[str, Any]) -> dict[str, Any]:
        return status.get("gates", {}).get("capabilities", {}).get(CAPABILITY) or {}

    async def _service_requests(self) -> int:
        entry = self._gates(await self._admin("/admin/status"))
        return entry.get("figures", {}).get("service", {}).get("requests", 0) if entry else 0

    async def _fallbacks(self) -> int:
        """Reads of the catalog the service failed and legacy answered, since the proxy started
        (`strangler_fallbacks_total` summed over reasons and workers)."""
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"}) as s:
            async with s.get(self.admin_url + "/metrics") as resp:
                resp.raise_for_status()
                lines = (await resp.text()).splitlines()
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in lines
                       if line.startswith("strangler_fallbacks_total{")
                       and f'capability="{CAPABILITY}"' in line))

    async def _shadow(self) -> dict[str, Any]:
        report = await self._admin(f"/admin/shadow?capability={CAPABILITY}")
        caps = [c for c in report["capabilities"] if c["name"] == CAPABILITY]
        return caps[0] if caps else {"compared": 0, "matched": 0, "match_rate": None}

    async def _drain(self, direction: str, timeout: float = 60) -> str:
        """`strangler cdc drain`. Right after the pipeline starts, its capture may not have set
        up yet (no slot, no heartbeat table): drain is retried until TIMEOUT."""
        deadline = time.monotonic() + timeout
        while True:
            done = await asyncio.to_thread(
                _strangler, "cdc", "drain", CAPABILITY, "--config", str(self.cdc_config),
                "--direction", direction, "--timeout", str(timeout), timeout=timeout + 60)
            if done.returncode == 0:
                return done.stdout.strip()
            if time.monotonic() > deadline or not self.children["cdc"].running():
                raise ScenarioError(f"cdc drain {direction} failed: {done.stdout}"
                                    f"{done.stderr[-2000:]}\n{self.children['cdc'].tail()}")
            await asyncio.sleep(0.5)

    async def _promote(self, timeout: float = 150) -> str:
        """`strangler promote`: wait (exit 3) while traffic builds up, fail on a failing gate."""
        from operate.admin_client import AdminClient
        from operate.promote import promote

        def once() -> Any:
            with AdminClient([self.admin_url], self.token) as client:
                return promote(self.rules, CAPABILITY, client, WHO)

        async def moved() -> Any:
            result = await asyncio.to_thread(once)
            if result.verdict is not None and result.verdict.state == "fail":
                raise ScenarioError(f"promote refused: {'; '.join(result.verdict.reasons)}")
            return result if result.change is not None else None
        result = await _until("promote (gates pass)", moved, timeout, every=0.5)
        await self._serving(result.change.after)
        return result.change.summary

    async def _edit_price(self, product: int, price: float) -> str:
        """An operator's price edit through the proxy's write path (to whichever side owns
        writes); the answer must carry the new price."""
        async with aiohttp.ClientSession() as session:
            async with session.patch(f"{self.proxy_url}/api/products/{product}",
                                     json={"price": price}) as resp:
                body = await resp.json()
                if resp.status != 200 or body.get("price") != price:
                    raise ScenarioError(f"price edit of product {product} answered "
                                        f"{resp.status}: {body}")
        self.outcome.price_edits[product] = price
        return f"product {product} -> {price:.2f}"

    async def _prices(self, port: int) -> dict[int, float]:
        async with aiohttp.ClientSession() as session:
            out = {}
            for product in self.outcome.price_edits:
                async with session.get(f"http://127.0.0.1:{port}/api/products/{product}") as r:
                    out[product] = (await r.json())["price"]
            return out

    # ---- the scenario -------------------------------------------------------------------------

    async def run(self) -> Outcome:
        self._load = Load(self.proxy_url, users=self.users, concurrency=self.concurrency,
                          products=self.products, duration_s=600)
        load_task = asyncio.create_task(self._load.run())
        try:
            await self._operate()
        finally:
            self._load.stop.set()
            self.outcome.load = await load_task
        self.step("load stopped", self.outcome.load.summary())
        await self._final_checks()
        return self.outcome

    async def _operate(self) -> None:
        self.step("stack up", f"legacy :{self.ports['legacy']}, catalog :{self.ports['catalog']}, "
                  f"proxy :{self.ports['proxy']} (2 workers), cdc both ways "
                  f"({'kafka' if self.stores.kafka_bootstrap else 'embedded'})")
        await _until("load traffic", lambda: self._load.report.requests > 50, 30)
        self.step("price edit (writes: legacy)", await self._edit_price(3, 19.99))

        await self._act(actions.stage, "shadow",
                        why="compare the service's answers on live traffic")
        shadow = await _until(
            f"shadow match >= {MIN_MATCH} % on {MIN_COMPARED} comparisons",
            self._shadow_ready, 90, every=1.0)
        self.outcome.shadow_before_canary = shadow
        self.step("shadow", f"{shadow['compared']} compared, match {shadow['match_rate']:.2f} %")

        await self._act(actions.stage, "canary", why=f"shadow match {shadow['match_rate']:.2f} %")
        await self._act(actions.rollout, 1, why="first canary step")
        self.step("canary 1 %", "rollout 0 -> 1")
        for _ in range(2):
            self.step("promote", await self._promote())

        # The gates count a read legacy covered for the service as a service error, so a crash
        # is judged against the healthy traffic of the step: enough of it first, or a few
        # seconds of outage alone would trip the automatic rollback.
        await _until("service traffic at 25 %", self._service_requests_at_least(1200), 150)
        before = await self._fallbacks()
        await asyncio.to_thread(self.children["catalog"].kill9)
        crashed = self._load.report.requests
        self._start_release()
        await self._healthy("catalog", self.ports["catalog"])
        covered = self.outcome.fallbacks["crash"] = await self._fallbacks() - before
        self.step("crash: kill -9 + restart", f"{self._load.report.requests - crashed} requests "
                  f"during the outage, {covered} service reads answered by legacy (fallback)")
        self.step("price edit (writes: legacy)", await self._edit_price(5, 24.50))
        history = await asyncio.to_thread(self._history)
        if any(str(e.get("who", "")).startswith("proxy") for e in history):
            raise ScenarioError("the crash alone made the proxy roll the canary back: more "
                                "healthy traffic before the crash, or a looser error gate")
        self._rolled_back_after = max((e["id"] for e in history), default=0)

        await asyncio.to_thread(self.children["catalog"].stop)
        before = await self._fallbacks()
        self._start_release(BROKEN_RELEASE)
        await self._healthy("catalog", self.ports["catalog"])
        self.step("deploy broken release", f"{FAULT_ENV}={BROKEN_RELEASE}")
        rolled = await _until("the proxy's automatic rollback", self._autorollback, 90, every=0.5)
        self.step("automatic rollback", f"{rolled['who']}: {rolled['summary']} ({rolled['why']})")

        await asyncio.to_thread(self.children["catalog"].stop)
        # Counted once the broken release is gone: the workers' counters reach /metrics a
        # moment after the requests.
        covered = self.outcome.fallbacks["broken release"] = await self._fallbacks() - before
        self._start_release()
        await self._healthy("catalog", self.ports["catalog"])
        self.step("deploy fixed release", f"catalog restarted without the fault; the broken "
                  f"release's {covered} failed reads were answered by legacy "
                  f"(fallbacks {before} -> {before + covered})")
        await self._act(actions.rollout, 1, why="fixed release deployed")
        fixed_from = await self._shadow()
        self.step("canary 1 % again", "rollout 0 -> 1")
        self.step("promote", await self._promote())

        await self._act(actions.writes, "service", why="service takes catalog writes")
        drained = await self._drain("to_service")
        self.step("writes -> service", drained)
        self.step("price edit (writes: service)", await self._edit_price(3, 21.00))
        self.step("price edit (writes: service)", await self._edit_price(7, 8.75))

        shadow = self.outcome.shadow_before_cutover = await self._shadow()
        fixed = self.outcome.shadow_fixed_release = _since(fixed_from, shadow)
        await self._act(actions.cutover, why="canary healthy, writes on the service")
        self.step("cutover", f"shadow since the fixed release: {fixed['compared']} compared, "
                  f"match {fixed['match_rate']:.2f} %; whole run {shadow['match_rate']:.2f} % "
                  f"({shadow_mismatches(shadow)} status mismatches, the broken release's)")
        await _until("traffic on the service after cutover",
                     self._service_requests_at_least(20), 60)
        await self._act(actions.retire, why="legacy no longer needed for catalog reads")
        self.step("retire", "no fallback to legacy any more")
        await _until("traffic on the retired capability", self._service_requests_at_least(20), 60)

    async def _shadow_ready(self) -> dict[str, Any] | None:
        shadow = await self._shadow()
        rate = shadow.get("match_rate")
        return shadow if shadow["compared"] >= MIN_COMPARED and rate is not None \
            and rate >= MIN_MATCH else None

    def _service_requests_at_least(self, n: int) -> Callable[[], Any]:
        async def enough() -> bool:
            return await self._service_requests() >= n
        return enough

    def _history(self) -> list[dict[str, Any]]:
        done = _strangler("history", CAPABILITY, "--rules", str(self.rules), "--json",
                          "--limit", "100")
        if done.returncode != 0:
            raise ScenarioError(f"strangler history failed: {done.stderr}")
        doc = json.loads(done.stdout)
        return doc["entries"] if isinstance(doc, dict) else doc

    async def _autorollback(self) -> dict[str, Any] | None:
        """The proxy's rollback entry written after the broken release was deployed."""
        entries = await asyncio.to_thread(self._history)
        return next((e for e in entries if str(e.get("who", "")).startswith("proxy")
                     and e["id"] > self._rolled_back_after), None)

    async def _final_checks(self) -> None:
        drained = await self._drain("to_legacy")
        self.step("cdc drain to_legacy", drained)
        done = await asyncio.to_thread(
            _strangler, "cdc", "verify", CAPABILITY, "--config", str(self.cdc_config),
            "--direction", "to_legacy")
        self.outcome.verify_code, self.outcome.verify_output = done.returncode, done.stdout
        self.step("cdc verify",
                  done.stdout.strip().splitlines()[-1] if done.stdout else done.stderr)
        self.outcome.prices_seen = {"legacy": await self._prices(self.ports["legacy"]),
                                    "service": await self._prices(self.ports["catalog"])}
        self.outcome.history = await asyncio.to_thread(self._history)
        text = await asyncio.to_thread(_strangler, "history", CAPABILITY, "--rules",
                                       str(self.rules), "--limit", "100")
        self.outcome.history_text = text.stdout
        self.step("strangler history catalog", f"{len(self.outcome.history)} entries")


def _since(then: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """Shadow comparisons between two readings of the cumulative report. An estimate: each
    reading judges every comparison with the noise evidence of its time, and fields pending at
    the first may have been judged noise since, so new mismatches = growth of the unmatched."""
    compared = now["compared"] - then["compared"]
    unmatched = max(0, (now["compared"] - now["matched"]) - (then["compared"] - then["matched"]))
    return {"compared": compared, "matched": compared - unmatched,
            "match_rate": 100.0 * (compared - unmatched) / compared if compared else None}


def shadow_mismatches(shadow: dict[str, Any]) -> int:
    return sum(r.get("status_mismatch", 0) for r in shadow.get("routes", ()))


def checks(outcome: Outcome) -> list[tuple[str, bool, str]]:
    """What the run must show: (check, held, figures)."""
    load = outcome.load
    shadow = outcome.shadow_before_canary or {}
    fixed = outcome.shadow_fixed_release or {}
    commands = [e.get("command", "") for e in reversed(outcome.history)]
    prices_agree = (outcome.prices_seen.get("legacy") == outcome.prices_seen.get("service")
                    == outcome.price_edits)
    return [
        ("zero failed client requests", load is not None and load.failed == 0,
         load.summary() if load else "no load ran"),
        ("cdc verify: stores identical", outcome.verify_code == 0,
         (outcome.verify_output.strip().splitlines() or ["no verify output"])[-1]),
        ("edited prices on both sides", prices_agree,
         f"set {outcome.price_edits}, legacy {outcome.prices_seen.get('legacy')}, "
         f"service {outcome.prices_seen.get('service')}"),
        (f"shadow match >= {MIN_MATCH} % in shadow and since the fixed release",
         min(shadow.get("match_rate") or 0, fixed.get("match_rate") or 0) >= MIN_MATCH,
         f"shadow stage {shadow.get('compared', 0)} compared, match {shadow.get('match_rate')}; "
         f"fixed release {fixed.get('compared', 0)} compared, match {fixed.get('match_rate')}"),
        ("history lists every step in order, incl. the automatic rollback",
         _in_order(outcome.history, STEPS_IN_HISTORY), " -> ".join(commands)),
    ]


# What the run's history must hold, in this order (other entries, e.g. promotes, in between):
# (who starts with, command) with "" for "any".
STEPS_IN_HISTORY = (("", f"stage {CAPABILITY} shadow"), ("", f"stage {CAPABILITY} canary"),
                    ("", f"rollout {CAPABILITY} 1"), ("proxy", ""),
                    ("", f"rollout {CAPABILITY} 1"), ("", f"writes {CAPABILITY} service"),
                    ("", f"cutover {CAPABILITY}"), ("", f"retire {CAPABILITY}"))


def _in_order(history: list[dict[str, Any]], steps: tuple[tuple[str, str], ...]) -> bool:
    """The history (newest first, as `history --json` gives it) holds STEPS as a subsequence."""
    wanted = iter(steps)
    who, command = next(wanted)
    for entry in reversed(history):
        if entry.get("who", "").startswith(who) and command in ("", entry.get("command")):
            try:
                who, command = next(wanted)
            except StopIteration:
                return True
    return False


# ---- `strangler demo --scenario`: the same run on screen, on SQLite, no broker -------------------

SCREEN_DIR = Path("var") / "scenario"


def show(products: int) -> int:
    """Run the scenario on fresh SQLite files under var/scenario/ with the embedded transport,
    printing one line per step as it happens, then the history and the checks. 0: every check
    holds; 1: one does not, or a step's condition never came (logs: var/scenario/*.log)."""
    from strangler import file_lock
    from strangler.db import sqlite_url
    from strangler.errors import OperatorError
    if products < 10:
        raise OperatorError(f"--products must be >= 10 for the scenario, got {products}")
    base = SCREEN_DIR.resolve()      # the children run from the checkout, wherever this is
    owned = file_lock.hold_data_dir(base, "a scenario")    # released when this process ends
    shutil.rmtree(base, ignore_errors=True)           # every run starts from fresh stores
    base.mkdir(parents=True)
    stores = Stores(sqlite_url(base / "legacy.db"), sqlite_url(base / "catalog.db"))

    async def main() -> Outcome:
        async with Scenario(base, stores, products=products,
                            say=lambda line: print(line, flush=True)) as scenario:
            return await scenario.run()
    try:
        outcome = asyncio.run(main())
    except ScenarioError as exc:
        print(f"scenario stopped: {exc}\n(logs of every process: {base}/*.log)",
              file=sys.stderr)
        return 1
    print("\n" + outcome.history_text.rstrip() + "\n\nchecks:")
    results = checks(outcome)
    for name, held, figures in results:
        print(f"  {'PASS' if held else 'FAIL'}  {name}: {figures}")
    owned.close()
    return 0 if all(held for _, held, _ in results) else 1
