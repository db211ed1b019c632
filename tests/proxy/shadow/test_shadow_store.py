import multiprocessing
import threading
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from proxy.shadow.report import build_report
from proxy.shadow.store import ShadowStore, bin_upper_ms, latency_bin, samples_t
from tests.proxy.shadow.shadow_helpers import fill, observation

AT = 1_800_000_000.0


def _route(report, route):
    for cap in report["capabilities"]:
        for r in cap["routes"]:
            if r["route"] == route:
                return r
    raise AssertionError(f"route {route} not in report")


def _write_in_process(url: str, n: int) -> None:
    store = ShadowStore(url, flush_interval_s=0.05)
    store.start()
    for i in range(n):
        store.record(observation(raw={"$.price"}, noise=set(), at=AT + i))
        if i % 10 == 0:
            time.sleep(0.01)  # let the flusher interleave with the other process
    store.close()


def _several_processes_share_one_store(url: str) -> None:
    """Each process creates the schema if missing (racing the others) and writes 100."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_in_process, args=(url, 100)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ShadowStore(url)
    r = _route(build_report(store, now=AT + 200), "/api/products/{id}")
    assert r["compared"] == 300 and r["noise_samples"] == 300
    assert r["fields"][0]["field"] == "$.price" and r["fields"][0]["raw"] == 300
    assert r["latency"]["legacy"]["count"] == 300
    store.engine.dispose()


def test_processes_share_one_sqlite_store(tmp_path):
    _several_processes_share_one_store(f"sqlite:///{tmp_path / 'shadow.sqlite3'}")


def test_processes_share_one_postgresql_store(pg_url):
    _several_processes_share_one_store(pg_url)


def test_counts_accumulate_across_flushes(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 's.db'}")
    store.create_schema()
    fill(store, n=20)
    store.flush()
    fill(store, n=20, at=AT + 100)
    store.count("catalog", "/api/products/{id}", "skipped:unsafe-method", 3, at=AT)
    store.count("catalog", "/api/products/{id}", "dropped", 2, at=AT)
    store.flush()
    r = _route(build_report(store, now=AT + 200), "/api/products/{id}")
    assert (r["compared"], r["noise_samples"], r["dropped"]) == (40, 20, 2)
    assert r["skipped"] == {"unsafe-method": 3}
    store.close()


def test_samples_are_bounded_per_field(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 's.db'}", samples_per_field=3)
    store.create_schema()
    granted = [store.wants_sample("catalog", "/r", "$.price", now=AT) for _ in range(10)]
    assert granted == [True] * 3 + [False] * 7
    assert store.wants_sample("catalog", "/r", "$.price", now=AT + 61)  # a fresh one later
    for i in range(8):  # e.g. another process also stored some
        store.record(observation(route="/r", raw={"$.price"}, at=AT + i,
                                 sample_fields=("$.price",)))
        store.flush()
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(samples_t)).scalar() == 3
        kept = conn.execute(select(samples_t.c.at).order_by(samples_t.c.at)).scalars().all()
    assert kept == [AT + 5, AT + 6, AT + 7]  # the newest
    store.close()


def test_routes_per_capability_are_bounded_across_restarts(tmp_path):
    """Made-up paths under a prefix matcher must not grow the store without end."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = ShadowStore(url)
    store.routes.limit = 3
    store.start()
    for i in range(5):
        store.record(observation(route=f"/api/products/x/r{i}", raw={"$.a"}, at=AT))
    store.count("catalog", "/api/products/x/r9", "skipped:unsafe-method", at=AT)
    store.count("other", "/api/other", "dropped", at=AT)        # another capability has room
    store.record(observation(route="/api/products/x/4111-1111-1111-1111", at=AT))
    store.close()
    again = ShadowStore(url)            # a restart: the routes already kept still count
    again.routes.limit = 3
    again.start()
    again.record(observation(route="/api/products/x/new", at=AT + 1))
    again.close()
    report = build_report(ShadowStore(url), now=AT + 200)
    routes = {r["route"]: r for cap in report["capabilities"] for r in cap["routes"]}
    assert set(routes) == {"/api/products/x/r0", "/api/products/x/r1", "/api/products/x/r2",
                           "…other routes", "/api/other"}
    assert routes["…other routes"]["compared"] == 4
    assert routes["…other routes"]["skipped"] == {"unsafe-method": 1}


def test_a_card_number_in_a_route_is_masked(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 's.db'}")
    store.start()
    store.record(observation(route="/api/products/x/4111 1111 1111 1111", at=AT))
    store.close()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT route FROM shadow_counters")).scalars().all() \
            == ["/api/products/x/{card}"]


def test_retention_deletes_old_buckets(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 's.db'}", retention_days=1)
    store.create_schema()
    now = time.time()
    store.record(observation(at=now - 3 * 86400, raw={"$.a"}, sample_fields=("$.a",)))
    store.record(observation(at=now - 60, raw={"$.a"}))
    store.flush()  # the first flush also applies retention
    r = _route(build_report(store, now=now), "/api/products/{id}")
    assert r["compared"] == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(samples_t)).scalar() == 0
    store.close()


def test_latency_bins_are_ten_percent_wide():
    for seconds in (0.00005, 0.001, 0.0123, 0.5, 3.0):
        upper = bin_upper_ms(latency_bin(seconds))
        assert seconds * 1000 <= upper + 1e-9
        assert upper <= max(seconds * 1000 * 1.1, 0.1) + 1e-9


def _reports_stay_consistent_while_writers_flush(url: str) -> None:
    writer = ShadowStore(url)
    writer.create_schema()
    reader = ShadowStore(url)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            for _ in range(20):  # a new route every round: it appears in every table at once
                writer.record(observation(route=f"/r/{i % 7}/{i // 50}", raw={"$.a"},
                                          noise=set() if i % 2 else None, at=AT + i))
                i += 1
            writer.flush()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        for _ in range(25):
            report = build_report(reader, now=AT + 10_000)
            for cap in report["capabilities"]:
                for r in cap["routes"]:
                    assert "fields" in r and r["matched"] <= r["compared"]
                    assert r["latency"]["legacy"]["count"] == r["compared"]
    finally:
        stop.set()
        thread.join()
    writer.close()
    reader.engine.dispose()


def test_sqlite_reports_stay_consistent_while_writers_flush(tmp_path):
    _reports_stay_consistent_while_writers_flush(f"sqlite:///{tmp_path / 's.db'}")


def test_postgresql_reports_stay_consistent_while_writers_flush(pg_url):
    _reports_stay_consistent_while_writers_flush(pg_url)


def test_a_failed_flush_keeps_its_counts_for_the_next(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = ShadowStore(url)
    store.create_schema()
    for i in range(5):
        store.record(observation(raw={"$.price"}, noise=set(), at=AT + i,
                                 sample_fields=("$.price",) if i == 0 else ()))
    store.count("catalog", "/api/products/{id}", "dropped", 2, at=AT)
    with store.engine.begin() as conn:  # the store loses a table under the writer
        conn.execute(text("DROP TABLE shadow_signatures"))
    with pytest.raises(OperationalError):
        store.flush()
    store.create_schema()
    store.record(observation(raw={"$.price"}, noise=set(), at=AT + 5))
    store.flush()
    r = build_report(store, now=AT + 100)["capabilities"][0]["routes"][0]
    assert (r["compared"], r["noise_samples"], r["dropped"]) == (6, 6, 2)
    assert r["fields"][0]["raw"] == 6 and r["latency"]["service"]["count"] == 6
    assert [s["field"] for s in r["samples"]] == ["$.price"]
    store.close()


def test_writer_creates_the_sqlite_folder_and_file_for_this_user_only(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 'var' / 'deeper' / 'shadow.sqlite3'}")
    store.start()
    store.record(observation(raw={"$.a"}))
    store.flush()
    folder = tmp_path / "var" / "deeper"
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    store.close()
    assert modes == {"shadow.sqlite3": 0o600, "shadow.sqlite3-wal": 0o600,
                     "shadow.sqlite3-shm": 0o600}       # requests are not for every user


def test_overlong_keys_are_cut_not_fatal(pg_url):
    """PostgreSQL enforces column lengths: an odd 600-character route must not fail flushes."""
    store = ShadowStore(pg_url)
    store.create_schema()
    route, field = "/r/" + "x" * 600, "$." + "y" * 700
    for i in range(12):
        store.record(observation(route=route, raw={field}, noise=set(), at=AT + i,
                                 sample_fields=(field,) if i == 0 else ()))
    store.count("catalog", route, "skipped:" + "z" * 300, at=AT)
    store.flush()
    r = build_report(store, now=AT + 100)["capabilities"][0]["routes"][0]
    assert r["route"] == route[:499] + "…" and r["compared"] == 12
    assert r["fields"][0]["field"] == field[:499] + "…"
    assert r["fields"][0]["verdict"] == "reported" and r["samples"]
    store.close()


def test_the_flusher_recreates_a_store_that_came_back_empty(pg_url, caplog):
    """The database restored or re-created empty under a running proxy: the flusher makes the
    tables again and writes what waited in memory; the outage is told once, then summed up."""
    store = ShadowStore(pg_url, flush_interval_s=0.05)
    store.start()
    store.record(observation(raw={"$.price"}, noise=set(), at=AT))
    deadline = time.monotonic() + 10
    while build_report(store, now=AT + 100)["capabilities"] == []:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE shadow_counters, shadow_fields, shadow_signatures, "
                          "shadow_latency, shadow_samples"))
    for i in range(1, 4):
        store.record(observation(raw={"$.price"}, noise=set(), at=AT + i))
    deadline = time.monotonic() + 10
    while True:
        try:
            routes = build_report(store, now=AT + 100)["capabilities"][0]["routes"]
        except IndexError:
            routes = []
        if routes and routes[0]["compared"] == 3:
            break
        assert time.monotonic() < deadline, "the store never came back"
        time.sleep(0.05)
    store.close()
    assert store.failures >= 1
    told = [r for r in caplog.records if r.name == "proxy.shadow.store"]
    assert sum(1 for r in told if r.exc_info) == 1           # one traceback, not one a second
    assert any("flushing again" in r.getMessage() for r in told)
