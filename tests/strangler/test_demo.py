"""`strangler demo` as an operator runs it: a real process tree on free ports, stopped by signal."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

READY_LINE = "Ctrl-C stops everything."


def start_demo(tmp_path: Path, legacy_port: int, catalog_port: int,
               proxy_port: int | None = None, admin_port: int | None = None) -> subprocess.Popen:
    proxy_port = proxy_port or free_port()
    admin_port = admin_port or free_port()
    # Output to files, not pipes: nobody reads a pipe while the demo runs, and a full pipe blocks.
    return subprocess.Popen(
        [sys.executable, "-m", "strangler", "demo", "--legacy-port", str(legacy_port),
         "--catalog-port", str(catalog_port), "--proxy-port", str(proxy_port),
         "--admin-port", str(admin_port), "--products", "20"],
        cwd=tmp_path, stdout=(tmp_path / "out.txt").open("w"),
        stderr=(tmp_path / "err.txt").open("w"))


def wait_for_line(demo: subprocess.Popen, path: Path, line: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and demo.poll() is None:
        if line in path.read_text():
            return path.read_text()
        time.sleep(0.1)
    pytest.fail(f"the demo never printed {line!r}; stderr:\n"
                f"{(path.parent / 'err.txt').read_text()[-2000:]}")


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie waiting for a (re)parent that does not reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_serves_both_apps_and_stops_every_child(tmp_path, stop_with):
    ports = free_port(), free_port(), free_port(), free_port()
    demo = start_demo(tmp_path, *ports)
    try:
        out = wait_for_line(demo, tmp_path / "out.txt", READY_LINE)
        legacy_url, catalog_url, proxy_url, _admin = (f"http://127.0.0.1:{p}" for p in ports)
        assert legacy_url in out and catalog_url in out and proxy_url in out
        children = children_of(demo.pid)
        assert sorted(command_line(pid).split()[3] for pid in children) == \
            ["catalog", "cdc", "legacy", "proxy"]

        # Both answer, from stores seeded alike.
        legacy = get_json(f"{legacy_url}/api/products/7")
        service = get_json(f"{catalog_url}/api/products/7")
        noise = ("generated_at", "request_id")
        assert {k: v for k, v in legacy.items() if k not in noise} == \
            {k: v for k, v in service.items() if k not in noise}
        assert (tmp_path / "var" / "demo" / "catalog.db").exists()

        # The proxy answers for the shop, and a write through it (legacy owns writes in the
        # demo's rules) reaches the catalog service's store through the CDC.
        assert get_json(f"{proxy_url}/api/products/7")["sku"] == legacy["sku"]
        patch = urllib.request.Request(
            f"{proxy_url}/api/products/7", method="PATCH", data=b'{"price": 12.34}',
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(patch, timeout=10) as answer:
            assert json.load(answer)["price"] == 12.34
        deadline = time.monotonic() + 30
        while get_json(f"{catalog_url}/api/products/7")["price"] != 12.34:
            assert time.monotonic() < deadline, "the price edit never reached the catalog service"
            time.sleep(0.2)

        # The printed shell set-up makes the printed commands act on this demo's rules copy and
        # proxy (they edited the checked-in template before, and `strangler` was not on PATH).
        setup = next(line.strip() for line in out.splitlines() if line.strip().startswith("cd "))
        status = subprocess.run(["bash", "-c", f"{setup} && strangler status"], env={
            k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")},
            capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        rules = tmp_path / "var" / "demo" / "rules.yaml"
        assert f"rules {rules} version" in status.stdout and "OLD RULES" not in status.stdout
        # A second demo from this checkout would wipe this one's stores, rules and token.
        second = subprocess.run(
            [sys.executable, "-m", "strangler", "demo", "--legacy-port", str(free_port()),
             "--catalog-port", str(free_port()), "--proxy-port", str(free_port()),
             "--admin-port", str(free_port())], cwd=tmp_path, capture_output=True, text=True,
            timeout=60)
        assert second.returncode == 2 and second.stderr.startswith(
            f"strangler: error: a demo is already running from this checkout (process "
            f"{demo.pid}) and owns var/demo/"), second.stderr
        assert get_json(f"{catalog_url}/api/products/7")["price"] == 12.34      # untouched

        demo.send_signal(stop_with)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert all(gone(child) for child in children)
    assert all(port_is_free(port) for port in ports)


def test_a_port_in_use_is_one_clear_error_and_nothing_starts(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken, catalog_port = squatter.getsockname()[1], free_port()
        demo = start_demo(tmp_path, taken, catalog_port)
        assert demo.wait(timeout=60) == 2
    err = (tmp_path / "err.txt").read_text()
    assert err.splitlines() == [
        f"strangler: error: cannot use 127.0.0.1:{taken} for the legacy shop (Address already "
        "in use); stop whatever holds it or pass --legacy-port"]
    assert port_is_free(catalog_port)


def test_a_child_that_dies_stops_the_demo_and_the_rest(tmp_path):
    ports = free_port(), free_port()
    demo = start_demo(tmp_path, *ports)
    try:
        wait_for_line(demo, tmp_path / "out.txt", READY_LINE)
        children = children_of(demo.pid)
        catalog = next(pid for pid in children if "catalog" in command_line(pid))
        os.kill(catalog, signal.SIGKILL)
        assert demo.wait(timeout=60) == 2
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert "the catalog service exited unexpectedly" in (tmp_path / "err.txt").read_text()
    assert all(gone(child) for child in children)


def test_children_do_not_outlive_a_killed_demo(tmp_path):
    """Even SIGKILL, which the demo cannot handle, leaves no orphan holding a port."""
    ports = free_port(), free_port()
    demo = start_demo(tmp_path, *ports)
    try:
        wait_for_line(demo, tmp_path / "out.txt", READY_LINE)
        children = children_of(demo.pid)
    finally:
        demo.kill()
        demo.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(gone(child) for child in children):
        time.sleep(0.1)
    orphans = [child for child in children if not gone(child)]
    for orphan in orphans:  # clean up before failing, so a regression leaks nothing
        os.kill(orphan, signal.SIGKILL)
    assert orphans == []


def test_two_services_on_one_port_is_refused_before_anything_starts(tmp_path):
    port = free_port()
    demo = start_demo(tmp_path, port, port)
    assert demo.wait(timeout=60) == 2
    assert (tmp_path / "err.txt").read_text() == (
        f"strangler: error: the catalog service (--catalog-port) and the legacy shop "
        f"(--legacy-port) both want port {port}; "
        "give them different ports with --catalog-port\n")
    assert not (tmp_path / "var").exists()



def test_the_cdc_pipeline_starts_only_once_the_services_that_own_its_stores_answer(
        tmp_path, monkeypatch):
    """A pipeline started beside the catalog service snapshotted legacy categories into the
    catalog store while the service was still seeding it: the seed then hit a duplicate key
    and the service exited. The order of starts and readiness waits is the contract."""
    from strangler import cli, demo

    monkeypatch.chdir(tmp_path)
    events: list[str] = []

    class Running:
        def poll(self):
            return None

    def start(service):
        events.append(f"start {service.name}")
        return Running()

    monkeypatch.setattr(demo, "_check_ports", lambda wanted: None)
    monkeypatch.setattr(demo, "_start", start)
    monkeypatch.setattr(demo, "_wait_ready",
                        lambda service, process, stop: events.append(f"ready {service.name}"))
    monkeypatch.setattr(demo, "_announce", lambda *_: signal.raise_signal(signal.SIGTERM))
    monkeypatch.setattr(demo, "_stop_all", lambda children: events.append("stop all"))
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert cli.main(["demo", "--products", "3"]) == 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    started = events.index("start cdc pipeline")
    assert events.index("ready legacy shop") < started
    assert events.index("ready catalog service") < started
    assert events.index("start legacy shop") < events.index("start catalog service") < started
    assert events[-1] == "stop all"
