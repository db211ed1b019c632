"""A Kafka broker restart mid-stream loses nothing: capture re-sends what was not acknowledged,
apply resumes from the offsets stored in the target, and verify finds zero differences.

The broker is a private one (scripts/kafka.sh on free ports, its own log dir) so the suite's
shared broker is never stopped.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cdc.config import load_config
from cdc.mapping import TO_SERVICE
from cdc.pipeline import Pipeline
from cdc_apply_helpers import cleanup_cdc, execute, new_stores, rows, wait_synced, write_config
from tests.conftest import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"


def _kafka_sh(action: str, env: dict[str, str]) -> None:
    done = subprocess.run([str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def private_kafka(tmp_path):
    port = free_port()
    env = {**os.environ, "STRANGLER_KAFKA_DATA": str(tmp_path / "kafka"),
           "STRANGLER_KAFKA_PORT": str(port), "STRANGLER_KAFKA_CONTROLLER_PORT": str(free_port())}
    _kafka_sh("start", env)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        _kafka_sh("stop", env)


def _writer(url: str, stop: threading.Event, done: list[int]) -> None:
    """Inserts, updates and deletes into legacy, one transaction each, until stopped."""
    i = 30_000
    while not stop.is_set():
        execute(url, "INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
                     "VALUES (:i, 'B-' || :i, 'b', '', 2.50, 'EUR', 1, now())",
                "UPDATE products SET price = price + 1 WHERE id = :i - 5",
                "DELETE FROM products WHERE id = :i - 9", params={"i": i})
        done.append(i)
        i += 1


def test_broker_restart_mid_stream_loses_nothing(private_kafka, pg_database, pg_admin_url, tmp_path):
    bootstrap, env = private_kafka
    cap, legacy, service = new_stores(pg_database, "b", products=300)
    config = load_config(cap, str(write_config(tmp_path, cap, legacy, service, kafka=bootstrap,
                                               batch_size=200)))
    pipeline = Pipeline(config, [TO_SERVICE]).start()
    stop, done = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(legacy, stop, done))
    try:
        writer.start()
        while len(done) < 50:                   # the pipeline streams writes...
            time.sleep(0.1)
        before_stop = len(done)
        _kafka_sh("stop", env)                  # ...which go on while the broker is down...
        _kafka_sh("start", env)                 # ...and after it is back
        time.sleep(1)
        stop.set()
        writer.join()
        report = wait_synced(config, TO_SERVICE, timeout_s=60)
        assert report.differences == 0, [(t.source, len(t.missing), len(t.extra), len(t.different)) for t in report.tables]
        assert len(done) > before_stop > 0       # writes ran before, during and after the restart
        assert rows(service, "SELECT count(*) FROM products WHERE id >= 30000")[0][0] > 0
        assert pipeline.errors == []
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        pipeline.close()
        cleanup_cdc(pg_admin_url, cap, None)
