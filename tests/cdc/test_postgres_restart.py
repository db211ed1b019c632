"""A PostgreSQL restart mid-stream loses nothing: capture reconnects to its slot and resumes
from the acknowledged LSN, apply reconnects and resumes from the offsets stored in the target,
and verify finds zero differences. Both a clean (`-m fast`) and a crash-style (`-m immediate`)
restart are taken while a writer keeps going.

The server is a private PostgreSQL 15 (initdb into a temporary directory, a free port) holding
both the legacy and the service database, so the suite's shared server is never restarted.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from cdc.config import load_config
from cdc.mapping import TO_SERVICE
from cdc.pipeline import Pipeline
from cdc_apply_helpers import cleanup_cdc, execute, new_stores, rows, wait_synced, write_config
from strangler.db import normalise_url
from tests.conftest import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*argv: str) -> None:
    """PostgreSQL refuses to run as root: its tools run as the `postgres` OS user."""
    done = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


class PrivateServer:
    """One PostgreSQL server of this test alone, with logical decoding on."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="strangler-pg-"))   # short: it holds the socket
        self.data, self.log, self.port = self.root / "data", self.root / "server.log", free_port()
        shutil.chown(self.root, "postgres")
        self.url = normalise_url(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")

    def start(self) -> None:
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start", "-o",
                     f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c wal_level=logical "
                     "-c max_replication_slots=10 -c max_wal_senders=10 -c fsync=off")

    def restart(self, mode: str) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-m", mode,
                     "restart")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data),
                            "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def database(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def private_pg():
    server = PrivateServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _writer(url: str, stop: threading.Event, done: list[int]) -> None:
    """Inserts, updates and deletes into legacy, one transaction each, until stopped; while the
    server is down a write fails and is tried again, as a shop's next request would."""
    i = 40_000
    while not stop.is_set():
        try:
            execute(url, "INSERT INTO products (id, sku, name, description, price, currency, category_id, "
                         "updated_at) VALUES (:i, 'R-' || :i, 'r', '', 3.50, 'EUR', 1, now()) "
                         "ON CONFLICT (id) DO NOTHING",     # the commit may have landed before the crash
                    "UPDATE products SET price = price + 1 WHERE id = :i - 5",
                    "DELETE FROM products WHERE id = :i - 9", params={"i": i})
        except Exception:  # noqa: BLE001 - the server is restarting
            stop.wait(0.1)
            continue
        done.append(i)
        i += 1


def _wait_writes(done: list[int], more: int) -> None:
    target, deadline = len(done) + more, time.monotonic() + 30
    while len(done) < target:
        assert time.monotonic() < deadline, "the writer made no progress"
        time.sleep(0.05)


def _wait_applied(service: str, written: int) -> None:
    """Until the service holds legacy's newest insert (older ones may be deleted by then)."""
    deadline = time.monotonic() + 30
    while (rows(service, "SELECT max(id) FROM products")[0][0] or 0) < written:
        assert time.monotonic() < deadline, f"write {written} never reached the service"
        time.sleep(0.1)


def test_postgres_restarts_mid_stream_lose_nothing(private_pg, kafka_bootstrap, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="cdc.pipeline")
    cap, legacy, service = new_stores(private_pg.database, "r", products=300)
    config = load_config(cap, str(write_config(tmp_path, cap, legacy, service, kafka=kafka_bootstrap,
                                               batch_size=200)))
    pipeline = Pipeline(config, [TO_SERVICE]).start()
    stop, done = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(legacy, stop, done))
    try:
        assert wait_synced(config, TO_SERVICE).differences == 0
        writer.start()
        for mode in ("fast", "immediate"):
            _wait_writes(done, 30)              # the pipeline streams writes...
            private_pg.restart(mode)            # ...the server goes away under capture and apply...
            _wait_writes(done, 30)              # ...writes go on once it is back...
            _wait_applied(service, done[-1])    # ...and reach the service: both loops reconnected
        stop.set()
        writer.join()
        report = wait_synced(config, TO_SERVICE, timeout_s=60)
        assert report.differences == 0, [(t.source, len(t.missing), len(t.extra), len(t.different))
                                         for t in report.tables]
        assert pipeline.errors == []            # both loops reconnected by themselves
        # Each restart broke both loops' connections (the one that saw it logged it and reconnected).
        failed = [r.getMessage().split(" ", 1)[0] for r in caplog.records if " failed, resuming" in r.getMessage()]
        assert failed.count("capture") >= 2 and failed.count("apply") >= 2, failed
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        pipeline.close()
        cleanup_cdc(private_pg.url, cap, kafka_bootstrap)
