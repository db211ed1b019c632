"""`strangler demo`: the whole kit on embedded defaults (SQLite, no broker), until Ctrl-C.

Every part runs as a child process of this one, started from one explicit list (`services`):
the legacy shop, the catalog service, the CDC pipeline carrying changes both ways through the
embedded transport, and the proxy in front (its admin API beside it). Each run starts from
fresh, freshly seeded SQLite files under `var/demo/`, so the legacy shop and the catalog
service hold the same rows and the demo is the same every time. The proxy serves a copy of
`routing_rules/demo.yaml` in `var/demo/rules.yaml`, so operators' commands edit that copy,
never the checked-in file.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from legacy_monolith.seed_data import DEFAULT_PRODUCTS
from strangler import file_lock
from strangler.db import sqlite_url
from strangler.errors import OperatorError

DATA_DIR = Path("var") / "demo"
DEMO_RULES = Path(__file__).resolve().parents[1] / "routing_rules" / "demo.yaml"
CDC_CONFIG = DEMO_RULES.parent / "cdc" / "catalog.yaml"
READY_TIMEOUT_S = 60.0   # seeding a large --products takes a while
STOP_TIMEOUT_S = 10.0    # per child, after SIGTERM, before SIGKILL
_PR_SET_PDEATHSIG = 1    # from <sys/prctl.h>


@dataclass(frozen=True, slots=True)
class Service:
    """One child process of the demo and how to tell it is up."""
    name: str
    flag: str                # the option that moves it to another port, for error messages
    host: str
    port: int | None         # None: no HTTP side (the CDC pipeline); ready once started
    argv: tuple[str, ...]
    show_path: str = "/"     # what to print for people to open
    health_path: str = "/healthz"  # answers 200 once the service is ready
    examples: tuple[str, ...] = ()  # commands to try, printed once everything is up
    more_ports: tuple[tuple[int, str], ...] = ()  # (port, flag), e.g. the proxy's admin API
    env: tuple[tuple[str, str], ...] = ()  # added to the child's environment
    summary: str = ""        # what to print instead of a URL when it has none
    # Start only once every service before it answers: the CDC pipeline must not snapshot or
    # apply into a store whose own service is still creating and seeding it.
    after_ready: bool = False

    @property
    def ports(self) -> tuple[tuple[int, str], ...]:
        own = ((self.port, self.flag),) if self.port is not None else ()
        return (*own, *self.more_ports)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def services(args: argparse.Namespace) -> list[Service]:
    """What the demo runs, in start order (stopped in reverse)."""
    strangler = (sys.executable, "-m", "strangler")
    seed = ("--seed", str(args.products))
    legacy = f"http://{args.host}:{args.legacy_port}"
    catalog = f"http://{args.host}:{args.catalog_port}"
    proxy = f"http://{args.host}:{args.proxy_port}"
    rules, token_file = DATA_DIR / "rules.yaml", DATA_DIR / "admin.token"
    stores = (("STRANGLER_LEGACY_DB", sqlite_url(DATA_DIR / "legacy.db")),
              ("STRANGLER_CATALOG_DB", sqlite_url(DATA_DIR / "catalog.db")),
              ("STRANGLER_RULES", str(rules.resolve())),
              ("STRANGLER_CDC_TRANSPORT", "embedded"))
    return [
        Service("legacy shop", "--legacy-port", args.host, args.legacy_port, strangler + (
            "legacy", "serve", "--host", args.host, "--port", str(args.legacy_port),
            "--database-url", sqlite_url(DATA_DIR / "legacy.db")) + seed,
            examples=(f"curl -s {legacy}/api/products/1",)),
        Service("catalog service", "--catalog-port", args.host, args.catalog_port, strangler + (
            "catalog", "serve", "--host", args.host, "--port", str(args.catalog_port),
            "--database-url", sqlite_url(DATA_DIR / "catalog.db")) + seed,
            show_path="/api/products",
            examples=(f"curl -s {catalog}/api/products/1",
                      f"curl -s -X PATCH {catalog}/api/products/1 -H 'Content-Type: "
                      "application/json' -H 'X-Strangler-Dry-Run: 1' -d '{\"price\": 9.99}'")),
        Service("cdc pipeline", "", args.host, None, strangler + (
            "cdc", "run", "catalog", "--config", str(CDC_CONFIG), "--direction", "both"),
            env=stores, summary="legacy <-> catalog stores, both ways (embedded transport)",
            after_ready=True,
            examples=("strangler cdc status catalog",)),
        Service("proxy", "--proxy-port", args.host, args.proxy_port, strangler + (
            "proxy", "--rules", str(rules), "--listen", f"{args.host}:{args.proxy_port}",
            "--admin", f"{args.host}:{args.admin_port}", "--admin-token-file", str(token_file),
            "--shadow-store", sqlite_url(DATA_DIR / "shadow.db"), "--workers", "2"),
            show_path="/products", more_ports=((args.admin_port, "--admin-port"),),
            examples=(f"curl -s {proxy}/api/products/1   # catalog capability, shadowed",
                      "strangler shadow report",
                      "strangler status",
                      "strangler stage catalog canary --reason 'shadow is clean'",
                      "strangler history catalog")),
    ]


def shell_setup(args: argparse.Namespace) -> str:
    """What a second shell needs for the printed commands (and the notes they print) to act on
    this demo: the venv's `strangler`, its rules copy (never the checked-in template), its
    proxy and token, its shadow store; CDC's `auto` direction reads STRANGLER_RULES too."""
    token = (DATA_DIR / "admin.token").resolve()
    return (f"cd {Path.cwd()} && export PATH=\"{Path(sys.executable).parent}:$PATH\" "
            f"STRANGLER_RULES={(DATA_DIR / 'rules.yaml').resolve()} "
            f"STRANGLER_PROXIES=http://{args.host}:{args.admin_port} "
            f"STRANGLER_ADMIN_TOKEN=\"$(cat {token})\" "
            f"STRANGLER_SHADOW_STORE={sqlite_url(DATA_DIR / 'shadow.db')}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help=run.__doc__, description=run.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--legacy-port", type=int, default=8001)
    parser.add_argument("--catalog-port", type=int, default=8002)
    parser.add_argument("--proxy-port", type=int, default=8080)
    parser.add_argument("--admin-port", type=int, default=8081)
    parser.add_argument("--products", type=int, default=DEFAULT_PRODUCTS, metavar="N",
                        help=f"products to seed into both stores (default {DEFAULT_PRODUCTS})")
    parser.add_argument("--scenario", action="store_true",
                        help="instead, show one whole extraction of the catalog under load, step "
                             "by step, then its checks (own free ports; strangler/scenario.py)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the legacy shop and the catalog service seeded alike, the CDC between their stores
    and the proxy in front; Ctrl-C stops everything."""
    if args.scenario:
        from strangler.scenario import show
        return show(args.products)
    if args.products < 0:
        raise OperatorError(f"--products must be >= 0, got {args.products}")
    wanted = services(args)
    _check_ports(wanted)
    owned = file_lock.hold_data_dir(DATA_DIR, "a demo")      # released when this process ends
    _fresh_data_dir()
    _write_demo_rules(args)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    children: list[tuple[Service, subprocess.Popen]] = []
    try:
        for service in wanted:
            if service.after_ready:
                for earlier, process in children:
                    _wait_ready(earlier, process, stop)
            if stop.is_set():
                break
            children.append((service, _start(service)))
        for service, process in children:
            _wait_ready(service, process, stop)
        if not stop.is_set():
            _announce(wanted, shell_setup(args))
        while not stop.wait(0.5):
            for service, process in children:
                if process.poll() is not None:
                    raise OperatorError(f"the {service.name} exited unexpectedly with code "
                                        f"{process.returncode}; see its output above")
        return 0
    finally:
        _stop_all(children)
        owned.close()


def _check_ports(wanted: Sequence[Service]) -> None:
    """Fail before starting anything, with one line naming the port and the flag to move it."""
    seen: dict[int, str] = {}
    for service in wanted:
        for port, flag in service.ports:
            if port in seen:
                raise OperatorError(f"the {service.name} ({flag}) and the {seen[port]} both want "
                                    f"port {port}; give them different ports with {flag}")
            seen[port] = f"{service.name} ({flag})"
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                # The option aiohttp sets, so a port in TIME_WAIT counts as free, as for it.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((service.host, port))
                except OSError as exc:
                    raise OperatorError(
                        f"cannot use {service.host}:{port} for the {service.name} "
                        f"({exc.strerror}); stop whatever holds it or pass {flag}") from None


def _fresh_data_dir() -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for stale in DATA_DIR.glob("*.db*"):
        stale.unlink()
    # The operator history of the previous run's rules copy goes with it.
    shutil.rmtree(DATA_DIR / ".history", ignore_errors=True)


def _write_demo_rules(args: argparse.Namespace) -> None:
    """The proxy's rules: the checked-in demo rules, pointed at this run's ports, and a fresh
    admin token readable only by this user."""
    text = DEMO_RULES.read_text()
    for default, port in (("127.0.0.1:8001", args.legacy_port),
                          ("127.0.0.1:8002", args.catalog_port)):
        if default not in text:
            raise OperatorError(f"{DEMO_RULES} no longer names {default}; update "
                                "strangler/demo.py to match it")
        text = text.replace(default, f"{args.host}:{port}")
    (DATA_DIR / "rules.yaml").write_text(text)
    token = DATA_DIR / "admin.token"
    token.unlink(missing_ok=True)
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")


def _start(service: Service) -> subprocess.Popen:
    # Own session: the terminal's Ctrl-C reaches only the demo, which then stops the children
    # in order instead of all of them racing to exit at once.
    env = {**os.environ, **dict(service.env)} if service.env else None
    return subprocess.Popen(service.argv, start_new_session=True, preexec_fn=_die_with_parent,
                            env=env)


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the demo dies, even by SIGKILL,
    so a crashed demo leaves no orphans holding the ports."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_ready(service: Service, process: subprocess.Popen, stop: threading.Event) -> None:
    if service.port is None:
        if process.poll() is not None:
            raise OperatorError(f"the {service.name} exited with code {process.returncode} "
                                "while starting; see its output above")
        return
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stop.is_set():
        if process.poll() is not None:
            raise OperatorError(f"the {service.name} exited with code {process.returncode} "
                                "while starting; see its output above")
        try:
            with urllib.request.urlopen(service.url + service.health_path, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise OperatorError(f"the {service.name} did not answer {service.url}"
                                f"{service.health_path} within {READY_TIMEOUT_S:.0f} s; "
                                "see its output above")
        stop.wait(0.1)


def _announce(wanted: Sequence[Service], setup: str) -> None:
    width = max(len(service.name) for service in wanted)
    lines = [f"  {service.name:<{width}}  "
             + (f"{service.url}{service.show_path}" if service.port is not None else service.summary)
             for service in wanted]
    examples = [f"  {example}" for service in wanted for example in service.examples]
    print("strangler demo is up:", *lines, "in another shell, first:", f"  {setup}", "then try:",
          *examples, "send writes through the proxy (it gives each to the write owner): "
          "writing to both apps at once while CDC runs both ways makes a row two owners.",
          "Ctrl-C stops everything.", sep="\n", flush=True)


def _stop_all(children: list[tuple[Service, subprocess.Popen]]) -> None:
    """Stop the children last-started first (the proxy before its backends): SIGTERM, wait,
    then SIGKILL whatever ignored it, so nothing outlives the demo."""
    for service, process in reversed(children):
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"strangler demo: the {service.name} ignored SIGTERM; killing it",
                  file=sys.stderr)
            process.kill()
            process.wait()
