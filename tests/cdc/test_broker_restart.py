"""A Kafka broker restart mid-stream, on a private broker (the shared one must stay up)."""
from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from cdc.config import load_config
from cdc.mapping import TO_SERVICE
from cdc.pipeline import Pipeline
from cdc_apply_helpers import (cleanup_cdc, create_legacy_schema, create_service_schema, execute,
                               seed_legacy, wait_synced, write_config)
from conftest import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"


@pytest.fixture
def private_broker(tmp_path):
    env = {**os.environ, "STRANGLER_KAFKA_DATA": str(tmp_path / "kafka"),
           "STRANGLER_KAFKA_PORT": str(free_port()), "STRANGLER_KAFKA_CONTROLLER_PORT": str(free_port())}

    def broker(command: str) -> None:
        subprocess.run([str(SCRIPT), command], env=env, check=True, capture_output=True, timeout=180)

    broker("start")
    yield f"127.0.0.1:{env['STRANGLER_KAFKA_PORT']}", broker
    broker("stop")


def test_broker_restart_mid_stream_loses_nothing(private_broker, pg_database, pg_admin_url, tmp_path):
    bootstrap, broker = private_broker
    cap = f"b{uuid.uuid4().hex[:8]}"
    legacy, service = pg_database("legacy"), pg_database("service")
    create_legacy_schema(legacy)
    create_service_schema(service)
    seed_legacy(legacy, products=300)
    config = load_config(cap, str(write_config(tmp_path, cap, legacy, service, kafka=bootstrap)))
    pipeline = Pipeline(config, [TO_SERVICE]).start()
    stop, written = threading.Event(), []

    def write() -> None:
        i = 50_000
        while not stop.is_set():
            execute(legacy, "INSERT INTO products (id, sku, name, description, price, currency, category_id, "
                            "updated_at) VALUES (:i, 'B' || :i, 'b', '', 2.00, 'EUR', 1, now())",
                    "UPDATE products SET price = price + 1 WHERE id = :u", params={"i": i, "u": 1 + i % 300})
            written.append(i)
            i += 1
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    try:
        assert wait_synced(config, TO_SERVICE).differences == 0
        writer.start()
        time.sleep(1)
        broker("stop")                              # writes go on while the broker is away
        during = len(written)
        time.sleep(2)
        broker("start")
        time.sleep(2)
        stop.set()
        writer.join()
        assert len(written) > during
        assert wait_synced(config, TO_SERVICE, timeout_s=90).differences == 0
        assert pipeline.errors == []
    finally:
        stop.set()
        pipeline.close()
        cleanup_cdc(pg_admin_url, cap, None)
