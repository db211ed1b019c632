"""Run the proxy for tests: rule files on disk, the runtime in-process or as a subprocess.

In-process (`running_proxy`) is the fast default; `proxy_process` starts `strangler proxy`
with real worker processes for the multi-process, signal and memory tests.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import yaml

from proxy.runtime import Runtime
from proxy.settings import Limits, ProxySettings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def rules_doc(legacy: str, service: str | None = None, *, stage: str = "cutover",
              breaker: dict | None = None, prefixes: tuple[str, ...] = ("/api/",),
              service_timeouts: dict | None = None, trusted: list[str] | None = None,
              max_connections: int | None = None, shadow: dict | None = None) -> dict:
    """Two backends and one capability `catalog` on `prefixes`; everything else goes to legacy."""
    backends: dict = {"legacy": {"url": legacy, "connect_timeout": "1s", "read_timeout": "5s",
                                 "timeout": "10s"}}
    doc: dict = {"version": 1, "backends": backends, "capabilities": [], "default": "legacy"}
    if service is not None:
        svc = {"url": service, "connect_timeout": "500ms", "read_timeout": "2s", "timeout": "5s"}
        svc.update(service_timeouts or {})
        if breaker:
            svc["breaker"] = breaker
        if max_connections:
            svc["max_connections"] = max_connections
        backends["svc"] = svc
        doc["capabilities"].append({
            "name": "catalog", "match": [{"path_prefix": p.rstrip("/")} for p in prefixes],
            "legacy": "legacy", "service": "svc", "stage": stage,
            "writes": "service" if stage in ("cutover", "retired") else "legacy"})
        if shadow is not None:
            doc["capabilities"][0]["shadow"] = shadow
    if trusted is not None:
        doc["trusted_proxies"] = trusted
    return doc


def write_rules(path: Path, doc: dict) -> Path:
    """Write atomically (the watcher must never see half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)
    return path


@dataclass
class RunningProxy:
    url: str
    admin_url: str
    token: str
    runtime: Runtime | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@asynccontextmanager
async def running_proxy(rules: Path, *, limits: Limits | None = None, sink_factory=None,
                        access_log: str | None = None, trusted=()):
    token = secrets.token_hex(16)
    settings = ProxySettings(rules_path=rules, listen_port=free_port(), admin_port=free_port(),
                             admin_token=token, workers=1, limits=limits or Limits(),
                             access_log=access_log, reload_poll_s=0.2, shutdown_grace_s=2.0,
                             trusted_proxies=tuple(trusted))
    runtime = Runtime(settings, sink_factory=sink_factory, in_process=True)
    await runtime.start()
    try:
        yield RunningProxy(f"http://127.0.0.1:{settings.listen_port}",
                           f"http://127.0.0.1:{settings.admin_port}", token, runtime)
    finally:
        await runtime.stop()


@asynccontextmanager
async def proxy_process(rules: Path, workers: int, log: Path, extra: tuple[str, ...] = ()):
    """`strangler proxy` as a child process; yields (RunningProxy, Popen). SIGTERM at the end."""
    port, admin = free_port(), free_port()
    token = secrets.token_hex(16)
    env = {**os.environ, "STRANGLER_ADMIN_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "strangler", "proxy", "--rules", str(rules),
             "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
             "--workers", str(workers),
             "--shadow-store", f"sqlite:///{log.parent / 'shadow.sqlite3'}", *extra],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    loop = asyncio.get_running_loop()
    try:
        await wait_port(port, proc, log)
        await wait_port(admin, proc, log)
        yield RunningProxy(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", token), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await loop.run_in_executor(None, proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited {proc.returncode}:\n{log.read_text()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"port {port} never opened:\n{log.read_text()}")


def rss_kib(pid: int) -> int:
    """Resident memory of a process (psutil is not installed: read /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def raw_exchange(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the proxy closes the connection (or the timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            chunks.append(chunk)
    except asyncio.TimeoutError:
        chunks.append(b"<<still open>>")
    writer.close()
    return b"".join(chunks)


async def eventually(check, timeout: float = 20.0):
    """Await `check()` until it stops raising AssertionError; re-raise its last one after
    `timeout` seconds (supervisors merge worker counters once a second, restarts take a while)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def client(**kw) -> aiohttp.ClientSession:
    """A client that, like the proxy, never decompresses."""
    return aiohttp.ClientSession(auto_decompress=False, **kw)


async def read_all(reader: asyncio.StreamReader, wait_s: float = 15.0) -> bytes:
    """Everything a raw client receives until the proxy closes the connection (each read may
    take WAIT_S: generous, a bound on a hung test, not a timing check)."""
    chunks = []
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), wait_s)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
