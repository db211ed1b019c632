"""Start benchmark servers as child processes, wait until they answer, and always stop them."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One or more processes that together serve `url` (e.g. N worker processes on one port)."""
    name: str
    url: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    log: Path | None = None

    def stop(self) -> None:
        """SIGTERM each process group (a dead leader may leave workers behind), then SIGKILL."""
        for proc in self.processes:
            _signal_group(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the whole group is gone already


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Run argv in its own process group (so stop() reaches its children), output to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})


def wait_until_answers(server: Server, path: str, timeout: float = 30.0) -> None:
    """Poll GET url+path until it returns 200; fail with the server's log tail if it never does."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        dead = [p for p in server.processes if p.poll() is not None]
        if dead:
            break
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
                last = resp.status
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    server.stop()
    tail = server.log.read_text(errors="replace")[-2000:] if server.log and server.log.exists() else ""
    raise RuntimeError(f"{server.name} did not answer 200 on {server.url + path} (last: {last}); "
                       f"log tail:\n{tail}")


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by one process."""
    return _ticks(_stat_fields(Path(f"/proc/{pid}/stat"))) / os.sysconf("SC_CLK_TCK")


def _stat_fields(stat: Path) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): field 3 onwards."""
    return stat.read_text().rsplit(")", 1)[1].split()


def _ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])     # fields 14, 15 of stat: utime, stime


def cpu_seconds(server: Server) -> float:
    """CPU time (user + system) used so far by every live process in the server's process groups.

    On a shared machine a peer's CPU cost per request is steadier than its requests per second,
    because other tenants slow everyone down but do not make a request cost more cycles.
    """
    groups = {p.pid for p in server.processes}
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat_fields(stat)
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) in groups:          # field 5 of stat: the process group
            ticks += _ticks(fields)
    return ticks / os.sysconf("SC_CLK_TCK")
