"""`strangler cdc` as operators run it: separate capture and apply processes killed with -9
mid-stream and restarted, then verify, status, snapshot and dlq from the command line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cdc.config import load_config
from cdc.mapping import TO_SERVICE
from cdc_apply_helpers import (cleanup_cdc, create_legacy_schema, create_service_schema, execute,
                               new_stores, rows, wait_synced, write_config)
from strangler.db import sqlite_url
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "strangler", "cdc", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


class Proc:
    """One `strangler cdc run --only PART` child process (both halves when PART is None)."""

    def __init__(self, cap: str, config: Path, part: str | None, log: Path) -> None:
        self.args = [sys.executable, "-m", "strangler", "cdc", "run", cap, "--config", str(config)]
        if part:
            self.args += ["--only", part]
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "a"), start_new_session=True)
        return self

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return -9
        return self.proc.returncode if self.proc else 0


@pytest.fixture
def setup(pg_database, pg_admin_url, kafka_bootstrap, tmp_path):
    cap, legacy, service = new_stores(pg_database, "k", products=3000)
    path = write_config(tmp_path, cap, legacy, service, kafka=kafka_bootstrap, batch_size=500)
    procs: list[Proc] = []
    yield cap, path, legacy, service, procs
    for p in procs:
        p.stop()
    cleanup_cdc(pg_admin_url, cap, kafka_bootstrap)


def _wait_rows(url: str, at_least: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while rows(url, "SELECT count(*) FROM products")[0][0] < at_least:
        assert time.monotonic() < deadline, "the pipeline did not make progress"
        time.sleep(0.2)


def test_kill_9_of_apply_and_of_capture_mid_stream_loses_and_duplicates_nothing(setup, tmp_path):
    cap, path, legacy, service, procs = setup
    capture = Proc(cap, path, "capture", tmp_path / "capture.log").start()
    apply = Proc(cap, path, "apply", tmp_path / "apply.log").start()
    procs += [capture, apply]
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        i = 100_000
        while not stop.is_set():
            execute(legacy, "INSERT INTO products (id, sku, name, description, price, currency, category_id, "
                            "updated_at) VALUES (:i, 'K' || :i, 'k', '', 3.10, 'EUR', 2, now())",
                    "UPDATE products SET price = price + 0.01 WHERE id = :u",
                    "DELETE FROM products WHERE id = :d", params={"i": i, "u": 1 + i % 3000, "d": 3000 - i % 3000})
            written.append(i)
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        _wait_rows(service, 1000)
        apply.kill9()                              # mid-stream: batches in flight, offsets mid-way
        time.sleep(0.5)
        apply.start()
        n = len(written)
        while len(written) < n + 50:
            time.sleep(0.05)
        capture.kill9()                            # events produced but not yet acknowledged to the slot
        time.sleep(0.5)
        capture.start()
        n = len(written)
        while len(written) < n + 50:
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join()
    drained = cli("drain", cap, "--config", str(path), "--timeout", "90")
    assert drained.returncode == 0 and f"{cap}_to_service: drained" in drained.stdout, drained.stderr
    config = load_config(cap, str(path))
    assert wait_synced(config, TO_SERVICE, timeout_s=90).differences == 0
    done = cli("verify", cap, "--config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("0 differences")
    status = cli("status", cap, "--config", str(path), "--prometheus", "--interval", "0.2")
    assert status.returncode == 0, status.stderr
    assert f'strangler_cdc_dlq_size{{capability="{cap}",direction="to_service"}} 0' in status.stdout
    assert f'strangler_cdc_events_total{{capability="{cap}",direction="to_service",table="products"}}' in status.stdout
    assert "strangler_cdc_retained_wal_bytes" in status.stdout
    table = cli("status", cap, "--config", str(path), "--interval", "0")
    assert table.returncode == 0, table.stderr
    assert any(line.split()[:2] == ["to_service", "products"] and int(line.split()[2]) > 3000
               for line in table.stdout.splitlines()), table.stdout
    assert "to_service  slot active, retained WAL" in table.stdout and "DLQ 0" in table.stdout
    assert capture.stop() == 0 and apply.stop() == 0          # SIGTERM: a clean stop


def test_snapshot_dlq_and_operator_errors_from_the_command_line(setup, tmp_path):
    cap, path, legacy, service, procs = setup
    procs.append(Proc(cap, path, "capture", tmp_path / "c.log").start())
    procs.append(Proc(cap, path, "apply", tmp_path / "a.log").start())
    _wait_rows(service, 3000)
    execute(service, "UPDATE products SET title = 'drifted' WHERE id <= 10")
    snap = cli("snapshot", cap, "products", "--config", str(path))
    assert snap.returncode == 0 and "products: 3000 rows re-sent as op r" in snap.stdout, snap.stderr
    deadline = time.monotonic() + 30
    while rows(service, "SELECT count(*) FROM products WHERE title = 'drifted'") != [(0,)]:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    listing = cli("dlq", cap, "--config", str(path))
    assert listing.returncode == 0 and "0 dead letters" in listing.stdout
    missing = cli("dlq", cap, "--config", str(path), "--replay", "999")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no dead letter with id [999]" in missing.stderr
    assert f"list them with `strangler cdc dlq {cap} --config {path}`" in missing.stderr
    nothing = cli("verify", "nosuch")
    assert nothing.returncode == 2 and "no CDC config for capability 'nosuch'" in nothing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("convert: decimal_to_cents", "convert: cents"))
    invalid = cli("verify", cap, "--config", str(bad))
    assert invalid.returncode == 2
    assert f"{bad}:" in invalid.stderr and "columns.price.convert: unknown conversion 'cents'" in invalid.stderr


def test_a_store_that_cannot_be_opened_is_one_line_and_no_empty_sqlite_file(tmp_path):
    """The demo's relative SQLite URLs from another folder, and a PostgreSQL that does not
    answer: what is wrong and where, never a traceback; SQLite must not create an empty file
    that CDC would then read as the store."""
    (tmp_path / "var").mkdir()
    config = write_config(tmp_path, "demo", "sqlite:///var/legacy.db", "sqlite:///var/service.db")
    elsewhere = subprocess.run([sys.executable, "-m", "strangler", "cdc", "status", "demo",
                                "--config", str(config), "--interval", "0"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert elsewhere.returncode == 2 and elsewhere.stderr.count("\n") == 1, elsewhere.stderr
    assert ("legacy store sqlite:///var/legacy.db: no database at var/legacy.db (relative to the "
            f"current directory {tmp_path})") in elsewhere.stderr
    assert list((tmp_path / "var").iterdir()) == []

    port = free_port()                     # nothing listens there
    down = write_config(tmp_path, "down", f"postgresql://u:secret@127.0.0.1:{port}/legacy",
                        f"postgresql://u:secret@127.0.0.1:{port}/service")
    refused = cli("status", "down", "--config", str(down), "--interval", "0")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "cannot open a CDC store: " in refused.stderr and f"port {port}" in refused.stderr
    assert "secret" not in refused.stderr
    snapshot = cli("snapshot", "down", "products", "--config", str(down))   # psycopg2 itself
    assert snapshot.returncode == 2 and snapshot.stderr.count("\n") == 1, snapshot.stderr
    assert "cannot open a CDC store: " in snapshot.stderr and "secret" not in snapshot.stderr
    dlq = cli("dlq", "down", "--config", str(down))                           # through apply's store
    assert dlq.returncode == 2 and dlq.stderr.count("\n") == 1, dlq.stderr
    assert f"port {port} failed: Connection refused" in dlq.stderr


def test_an_unreachable_broker_is_one_line_naming_its_address(tmp_path):
    """Not librdkafka's retry log without end, nor a traceback after 30 s."""
    legacy, service = sqlite_url(tmp_path / "legacy.db"), sqlite_url(tmp_path / "service.db")
    create_legacy_schema(legacy)
    create_service_schema(service)
    port = free_port()                          # no broker there
    config = write_config(tmp_path, "nobroker", legacy, service, kafka=f"127.0.0.1:{port}")
    for args in (("run", "nobroker", "--seconds", "30"), ("snapshot", "nobroker", "products"),
                 ("drain", "nobroker")):
        done = cli(*args, "--config", str(config))
        assert done.returncode == 2, (args, done.stderr)
        [line] = done.stderr.splitlines()
        assert line.startswith(f"strangler: error: cannot reach the Kafka broker at 127.0.0.1:"
                               f"{port} (transport.bootstrap in {config}): "), line
        assert line.endswith("; start it (scripts/kafka.sh start) or fix the address"), line


def test_a_second_run_of_the_same_capability_is_refused_while_the_first_runs(tmp_path):
    """Two captures would both publish and delete the SQLite change rows; refused instead."""
    legacy, service = sqlite_url(tmp_path / "legacy.db"), sqlite_url(tmp_path / "service.db")
    create_legacy_schema(legacy)
    create_service_schema(service)
    config = write_config(tmp_path, "twice", legacy, service)
    first = Proc("twice", config, None, tmp_path / "first.log").start()
    try:
        lock = tmp_path / "legacy.db.twice_to_service-capture.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().startswith("process ")):
            assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        second = cli("run", "twice", "--config", str(config), "--seconds", "5")
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith(
            f"strangler: error: CDC twice_to_service capture is already running: process "
            f"{first.proc.pid} holds {lock}; stop that `strangler cdc run` first"), second.stderr
    finally:
        assert first.stop() == 0
    after = cli("run", "twice", "--config", str(config), "--seconds", "1")
    assert after.returncode == 0, after.stderr


def test_dead_letters_hold_the_drain_and_the_old_owners_are_not_replayed_blindly(tmp_path):
    """Drain said 'drained' with a change dead-lettered (switching writes then loses it), and
    after the switch a replay put legacy's old change over the service's newer write."""
    from tests.cdc.cdc_apply_helpers import seed_legacy
    legacy, service = sqlite_url(tmp_path / "legacy.db"), sqlite_url(tmp_path / "service.db")
    create_legacy_schema(legacy)
    create_service_schema(service)
    seed_legacy(legacy, categories=1, products=3)
    execute(service, "CREATE TRIGGER no_bad BEFORE UPDATE ON products WHEN NEW.title = 'BAD' "
                     "BEGIN SELECT RAISE(ABORT, 'no BAD titles'); END")
    config = write_config(tmp_path, "dl", legacy, service)
    running = Proc("dl", config, None, tmp_path / "run.log").start()
    try:
        deadline = time.monotonic() + 60
        while rows(service, "SELECT count(*) FROM products") != [(3,)]:
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.2)
        execute(legacy, "UPDATE products SET name = 'BAD' WHERE id = 1")
        drained = cli("drain", "dl", "--config", str(config), "--timeout", "60")
        assert drained.returncode == 1, drained.stdout + drained.stderr
        assert drained.stderr.startswith("dl_to_service: caught up, but 1 change(s) are "
                                          "dead-lettered, not applied"), drained.stderr
    finally:
        assert running.stop() == 0
    write_config(tmp_path, "dl", legacy, service, writes="service")        # the switch
    refused = cli("dlq", "dl", "--config", str(config), "--direction", "to_service", "--all")
    assert refused.returncode == 2 and "writes now go to service, so the letters of " \
        "dl_to_service hold changes of the old owner" in refused.stderr, refused.stderr
    forced = cli("dlq", "dl", "--config", str(config), "--direction", "to_service", "--all",
                 "--force")
    assert forced.returncode == 1 and "still failing" in forced.stderr    # the trigger still says no
