"""`strangler cdc snapshot TABLE` re-sends a table from its own process while the pipeline streams:
rows the stream changed or deleted after the re-read keep the stream's newer state (apply orders
the re-sent rows by the position noted before their snapshot, and remembers delete positions)."""
from __future__ import annotations

import threading

import pytest

from cdc.config import load_config
from cdc.mapping import TO_SERVICE
from cdc.pipeline import Pipeline
from cdc.resnapshot import emit_rows
from cdc_apply_helpers import (cleanup_cdc, execute, new_stores, rows, seed_legacy, wait_synced,
                               write_config)


@pytest.fixture
def stores(pg_database, pg_admin_url, kafka_bootstrap, tmp_path):
    cap, legacy, service = new_stores(pg_database, "r")
    config = load_config(cap, str(write_config(tmp_path, cap, legacy, service, kafka=kafka_bootstrap,
                                               batch_size=300)))
    yield config, legacy, service
    cleanup_cdc(pg_admin_url, cap, kafka_bootstrap)


def _churn(url: str, stop: threading.Event, deleted: list[int]) -> None:
    """Deletes and updates existing rows (what the re-sent rows race with) until stopped."""
    i = 1
    while not stop.is_set() and i < 2000:
        execute(url, "UPDATE products SET name = 'churned', price = price + 1 WHERE id = :u",
                "DELETE FROM products WHERE id = :d", params={"u": i + 1000, "d": i})
        deleted.append(i)
        i += 1


def test_resnapshot_while_rows_are_updated_and_deleted_keeps_the_streams_state(stores):
    config, legacy, service = stores
    seed_legacy(legacy, products=3000)
    route = config.route(TO_SERVICE)
    pipeline = Pipeline(config, [TO_SERVICE]).start()
    stop, deleted = threading.Event(), []
    churn = threading.Thread(target=_churn, args=(legacy, stop, deleted))
    try:
        assert wait_synced(config, TO_SERVICE).differences == 0
        execute(service, "UPDATE products SET title = 'drifted' WHERE id IN (2500, 2600)")   # what a repair fixes
        churn.start()
        sent = [emit_rows(config, route, "products", chunk_rows=500) for _ in range(2)]
        stop.set()
        churn.join()
        assert all(n > 2000 for n in sent)
        report = wait_synced(config, TO_SERVICE)
        assert report.differences == 0, [(len(t.missing), len(t.extra), len(t.different)) for t in report.tables]
        assert deleted and rows(service, f"SELECT count(*) FROM products WHERE id <= {deleted[-1]}") == [(0,)]
        assert rows(service, "SELECT count(*) FROM products WHERE title = 'drifted'") == [(0,)]   # repaired
        assert pipeline.errors == []
    finally:
        stop.set()
        if churn.is_alive():
            churn.join()
        pipeline.close()
