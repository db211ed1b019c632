"""The shadow results store: SQLAlchemy tables, an in-memory aggregator and a flushing thread.

Several proxy processes share one store (SQLite by default, PostgreSQL when configured): each
aggregates in memory and flushes about once a second as UPSERT increments
(`INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n`), so no process overwrites another's
counts and the hot path never waits for the database.

What is kept, per capability, route template and five-minute time bucket:
- `shadow_counters`: compared, status_mismatch, noise_samples, dropped, skipped:<reason>,
  error:<kind>;
- `shadow_fields`: per field key, requests with a raw (legacy vs service) and a noise
  (legacy vs legacy) difference;
- `shadow_signatures`: how many requests differed in exactly this set of fields (plus whether
  the status differed). Match rates are computed at report time from these: a request matches
  when its status matched and every field in its signature is judged noise *now*, with all
  the evidence gathered so far. The set of distinct signatures stays small (noise fields
  differ together), so the store stays bounded while the report stays exact;
- `shadow_latency`: a log-scale histogram per side (bins 10 % wide), so percentiles of both
  sides can be merged across processes and time;
- `shadow_samples`: at most `samples_per_field` redacted samples per (capability, route, field),
  the newest kept; after the first ones, a field gets a fresh sample at most once a minute.

Retention: buckets and samples older than `retention_days` are deleted by the flusher. Routes
are bounded too: a capability keeps its first `MAX_ROUTES`, then `…other routes`
(proxy.shadow.routes), so made-up paths cannot grow the store.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String,
                        Table, Text, and_, delete, func, inspect, select)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError, IntegrityError

from proxy.shadow.routes import RouteBudget
from strangler.db import make_engine, normalise_url, sqlite_path
from strangler.errors import OperatorError

log = logging.getLogger(__name__)

STORE_ENV = "STRANGLER_SHADOW_STORE"
DEFAULT_STORE = "sqlite:///var/shadow-results.sqlite3"  # var/ holds the demo's runtime files
BUCKET_S = 300
LATENCY_BASE_MS = 0.1      # upper bound of bin 0
LATENCY_GROWTH = 1.1       # each bin is 10 % wider than the previous
SAMPLE_REFRESH_S = 60.0
MAX_SIGNATURE_FIELDS = 50
NAME_CHARS = 200           # capability and counter names
KEY_CHARS = 500            # routes and field keys
OVERFLOW_FIELD = "…more fields"

metadata = MetaData()
_key = lambda: [Column("capability", String(NAME_CHARS), primary_key=True),  # noqa: E731
                Column("route", String(KEY_CHARS), primary_key=True),
                Column("bucket", BigInteger, primary_key=True)]
# Each bucketed table also has an index on `bucket`: windows (--since) and retention use it.
counters_t = Table("shadow_counters", metadata, *_key(),
                   Column("name", String(NAME_CHARS), primary_key=True),
                   Column("value", BigInteger, nullable=False),
                   Index("ix_shadow_counters_bucket", "bucket"))
fields_t = Table("shadow_fields", metadata, *_key(),
                 Column("field", String(KEY_CHARS), primary_key=True),
                 Column("raw", BigInteger, nullable=False),
                 Column("noise", BigInteger, nullable=False),
                 Index("ix_shadow_fields_bucket", "bucket"))
signatures_t = Table("shadow_signatures", metadata, *_key(),
                     Column("digest", String(40), primary_key=True),
                     Column("status_mismatch", Boolean, nullable=False),
                     Column("fields", Text, nullable=False),
                     Column("count", BigInteger, nullable=False),
                     Index("ix_shadow_signatures_bucket", "bucket"))
latency_t = Table("shadow_latency", metadata, *_key(),
                  Column("side", String(20), primary_key=True),
                  Column("bin", Integer, primary_key=True),
                  Column("count", BigInteger, nullable=False),
                  Index("ix_shadow_latency_bucket", "bucket"))
samples_t = Table("shadow_samples", metadata,
                  Column("id", Integer, primary_key=True, autoincrement=True),
                  Column("capability", String(NAME_CHARS), nullable=False),
                  Column("route", String(KEY_CHARS), nullable=False),
                  Column("field", String(KEY_CHARS), nullable=False),
                  Column("at", Float, nullable=False),
                  Column("data", Text, nullable=False),
                  Index("ix_shadow_samples_key", "capability", "route", "field", "id"),
                  Index("ix_shadow_samples_at", "at"))


def default_store_url() -> str:
    """The results store every proxy process and report shares, unless told otherwise."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def check_store_url(url: str) -> None:
    """A results store URL this store can use, else one OperatorError line saying what to write."""
    example = "sqlite:///var/shadow-results.sqlite3 or postgresql://user@host/db"
    shown = repr(re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url))   # never echo a password
    try:
        parsed = make_url(normalise_url(url))
    except Exception:
        raise OperatorError(f"store URL {shown} is not a database URL; write e.g. {example}") \
            from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise OperatorError(f"store URL {shown}: {parsed.get_backend_name()} is not supported; "
                            f"use SQLite or PostgreSQL, e.g. {example}")
    if parsed.get_backend_name() == "sqlite" and sqlite_path(url) is None:
        raise OperatorError(f"store URL {shown} names no file; write e.g. "
                            "sqlite:///var/shadow-results.sqlite3")


def latency_bin(seconds: float) -> int:
    ms = seconds * 1000.0
    if ms <= LATENCY_BASE_MS:
        return 0
    return math.ceil(math.log(ms / LATENCY_BASE_MS, LATENCY_GROWTH) - 1e-9)


def bin_upper_ms(index: int) -> float:
    return LATENCY_BASE_MS * LATENCY_GROWTH ** index


@dataclass(frozen=True, slots=True)
class Observation:
    """What one comparison produced, ready to be counted (samples already redacted)."""
    capability: str
    route: str
    at: float
    status_mismatch: bool
    raw_fields: frozenset[str]            # differing legacy vs service (status excluded)
    noise_fields: frozenset[str] | None   # legacy vs legacy; None: no noise sample taken
    legacy_latency_s: float
    service_latency_s: float
    sample: str | None = None             # redacted JSON sample of this request
    sample_fields: tuple[str, ...] = ()   # the fields this sample illustrates


@dataclass
class Snapshot:
    """Everything a report needs, read in one go."""
    counters: list[tuple] = field(default_factory=list)    # cap, route, bucket, name, value
    fields: list[tuple] = field(default_factory=list)      # cap, route, field, raw, noise
    signatures: list[tuple] = field(default_factory=list)  # cap, route, bucket, mismatch, fields, n
    latency: list[tuple] = field(default_factory=list)     # cap, route, side, bin, count
    samples: list[tuple] = field(default_factory=list)     # cap, route, field, at, data


class ShadowStore:
    """Write side (aggregate + flush thread) and read side (`snapshot`) of the results store."""

    def __init__(self, url: str, *, samples_per_field: int = 5, retention_days: float = 7.0,
                 flush_interval_s: float = 1.0) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.samples_per_field = samples_per_field
        self.retention_s = retention_days * 86400
        self.flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._reset_buffers()
        self._sample_quota: dict[tuple[str, str, str], tuple[int, float]] = {}
        self.routes = RouteBudget()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_retention = 0.0
        self.failures = 0           # flushes that failed since the start (for /metrics)

    # ---- lifecycle -------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create missing tables; tolerate other processes creating them at the same moment
        (each attempt creates what is still missing, so racing processes converge)."""
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            # 0600 when created (SQLite gives its -wal/-shm files the same mode): the samples
            # are redacted, yet they are clients' requests, not for every user of the machine.
            try:
                os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
        for attempt in range(10):
            try:
                metadata.create_all(self.engine)
                return
            except (OperationalError, ProgrammingError, IntegrityError):
                if attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def start(self) -> None:
        self.create_schema()
        with self.engine.connect() as conn:     # routes kept before count against the bound
            self.routes.seed(conn.execute(select(counters_t.c.capability, counters_t.c.route)
                                          .distinct()).all())
        self._thread = threading.Thread(target=self._run, name="shadow-store-flush", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._thread = None
        try:
            self.flush()
        except Exception:  # shutting down: say what was lost, do not take the caller down
            log.exception("shadow store: final flush failed; the last second of results is lost")
        self.engine.dispose()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.flush_interval_s):
            try:
                if failing:     # the database may be back empty (restored, re-created)
                    self.create_schema()
                self.flush()
            except Exception as exc:  # an outage must not kill the flusher; the next try retries
                self.failures += 1
                if not failing:       # the whole story once, then one line a minute
                    log.exception("shadow store: flush failed; results are kept in memory and "
                                  "retried every %.0f s", self.flush_interval_s)
                elif self.failures % max(1, round(60 / self.flush_interval_s)) == 0:
                    log.error("shadow store: still failing (%d attempts): %s", self.failures,
                              str(exc).splitlines()[0])
                failing = True
            else:
                if failing:
                    log.warning("shadow store: flushing again after %d failed attempts",
                                self.failures)
                failing = False

    # ---- write side (any thread) -------------------------------------------------------------
    def _reset_buffers(self) -> None:
        self._counters: dict[tuple, int] = {}
        self._fields: dict[tuple, list[int]] = {}
        self._signatures: dict[tuple, list] = {}
        self._latency: dict[tuple, int] = {}
        self._samples: list[dict] = []

    def count(self, capability: str, route: str, name: str, amount: int = 1,
              at: float | None = None) -> None:
        capability = _fit(capability, NAME_CHARS)
        with self._lock:
            key = (capability, self.routes.fold(capability, _fit(route, KEY_CHARS)), _bucket(at),
                   _fit(name, NAME_CHARS))
            self._counters[key] = self._counters.get(key, 0) + amount

    def kept_route(self, capability: str, route: str) -> str:
        """The name ROUTE's results are kept under (proxy.shadow.routes bounds them)."""
        with self._lock:
            return self.routes.fold(_fit(capability, NAME_CHARS), _fit(route, KEY_CHARS))

    def wants_sample(self, capability: str, route: str, field_key: str,
                     now: float | None = None) -> bool:
        """Reserve a sample slot for this field, if it still needs one."""
        now = time.time() if now is None else now
        capability = _fit(capability, NAME_CHARS)
        with self._lock:
            key = (capability, self.routes.fold(capability, _fit(route, KEY_CHARS)),
                   _fit(field_key, KEY_CHARS))
            taken, last = self._sample_quota.get(key, (0, 0.0))
            if taken < self.samples_per_field or now - last >= SAMPLE_REFRESH_S:
                self._sample_quota[key] = (taken + 1, now)
                return True
            return False

    def record(self, obs: Observation) -> None:
        capability, route = _fit(obs.capability, NAME_CHARS), _fit(obs.route, KEY_CHARS)
        raw_fields = {_fit(f, KEY_CHARS) for f in obs.raw_fields}
        noise_fields = (None if obs.noise_fields is None
                        else {_fit(f, KEY_CHARS) for f in obs.noise_fields})
        bucket = _bucket(obs.at)
        signature, digest = _signature(obs.status_mismatch, tuple(sorted(raw_fields)))
        with self._lock:
            route = self.routes.fold(capability, route)
            base = (capability, route, bucket)
            self._add_counter(base + ("compared",), 1)
            if obs.status_mismatch:
                self._add_counter(base + ("status_mismatch",), 1)
            for f in raw_fields:
                self._fields.setdefault(base + (f,), [0, 0])[0] += 1
            if noise_fields is not None:
                self._add_counter(base + ("noise_samples",), 1)
                for f in noise_fields:
                    self._fields.setdefault(base + (f,), [0, 0])[1] += 1
            sig = self._signatures.setdefault(base + (digest,), [obs.status_mismatch, signature, 0])
            sig[2] += 1
            for side, seconds in (("legacy", obs.legacy_latency_s),
                                  ("service", obs.service_latency_s)):
                lkey = base + (side, latency_bin(seconds))
                self._latency[lkey] = self._latency.get(lkey, 0) + 1
            if obs.sample is not None:
                for f in obs.sample_fields:
                    self._samples.append({"capability": capability, "route": route,
                                          "field": _fit(f, KEY_CHARS), "at": obs.at,
                                          "data": obs.sample})

    def record_latency(self, capability: str, route: str, side: str, seconds: float,
                       at: float | None = None) -> None:
        """One side's latency without a comparison: a shadow that timed out took its timeout
        at least, and leaving it out would show the service fast when it hangs."""
        capability = _fit(capability, NAME_CHARS)
        with self._lock:
            key = (capability, self.routes.fold(capability, _fit(route, KEY_CHARS)), _bucket(at),
                   side, latency_bin(seconds))
            self._latency[key] = self._latency.get(key, 0) + 1

    def _add_counter(self, key: tuple, amount: int) -> None:
        self._counters[key] = self._counters.get(key, 0) + amount

    def flush(self) -> None:
        """Write what was aggregated since the last flush, as increments."""
        with self._lock:
            counters, fields_, sigs = self._counters, self._fields, self._signatures
            latency, samples = self._latency, self._samples
            self._reset_buffers()
        try:
            self._write(counters, fields_, sigs, latency, samples)
        except Exception:
            self._restore(counters, fields_, sigs, latency, samples)
            raise

    def _restore(self, counters: dict, fields_: dict, sigs: dict, latency: dict,
                 samples: list) -> None:
        """Put a failed flush back, so a store outage delays counts instead of losing them."""
        with self._lock:
            for key, v in counters.items():
                self._add_counter(key, v)
            for key, (raw, noise) in fields_.items():
                row = self._fields.setdefault(key, [0, 0])
                row[0] += raw
                row[1] += noise
            for key, (mismatch, signature, n) in sigs.items():
                self._signatures.setdefault(key, [mismatch, signature, 0])[2] += n
            for key, n in latency.items():
                self._latency[key] = self._latency.get(key, 0) + n
            self._samples[:0] = samples

    def _write(self, counters: dict, fields_: dict, sigs: dict, latency: dict,
               samples: list) -> None:
        now = time.time()
        with self.engine.begin() as conn:
            k = ("capability", "route", "bucket")
            self._upsert(conn, counters_t, k + ("name",), ["value"],
                         [dict(zip(k + ("name",), key), value=v) for key, v in counters.items()])
            self._upsert(conn, fields_t, k + ("field",), ["raw", "noise"],
                         [dict(zip(k + ("field",), key), raw=v[0], noise=v[1])
                          for key, v in fields_.items()])
            self._upsert(conn, signatures_t, k + ("digest",), ["count"],
                         [dict(zip(k + ("digest",), key), status_mismatch=v[0], fields=v[1],
                               count=v[2]) for key, v in sigs.items()])
            self._upsert(conn, latency_t, k + ("side", "bin"), ["count"],
                         [dict(zip(k + ("side", "bin"), key), count=v)
                          for key, v in latency.items()])
            if samples:
                conn.execute(samples_t.insert(), samples)
                for cap, route, fkey in sorted({(s["capability"], s["route"], s["field"])
                                                for s in samples}):
                    self._trim_samples(conn, cap, route, fkey)
            if now - self._last_retention > 600:
                self._apply_retention(conn, now)
                self._last_retention = now

    def _upsert(self, conn, table: Table, keys: tuple[str, ...], add: list[str],
                rows: list[dict]) -> None:
        if not rows:
            return
        rows.sort(key=lambda r: tuple(r[c] for c in keys))  # one lock order across processes
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c: table.c[c] + getattr(stmt.excluded, c) for c in add})
        conn.execute(stmt, rows)

    def _trim_samples(self, conn, capability: str, route: str, field_key: str) -> None:
        """Keep the newest `samples_per_field` samples of this field, drop older ones."""
        same = and_(samples_t.c.capability == capability, samples_t.c.route == route,
                    samples_t.c.field == field_key)
        keep = list(conn.execute(select(samples_t.c.id).where(same)
                                 .order_by(samples_t.c.id.desc())
                                 .limit(self.samples_per_field)).scalars())
        conn.execute(delete(samples_t).where(same, samples_t.c.id.not_in(keep)))

    def _apply_retention(self, conn, now: float) -> None:
        cutoff = now - self.retention_s
        for table in (counters_t, fields_t, signatures_t, latency_t):
            conn.execute(delete(table).where(table.c.bucket < _bucket(cutoff)))
        conn.execute(delete(samples_t).where(samples_t.c.at < cutoff))

    # ---- read side ---------------------------------------------------------------------------
    def capabilities(self) -> list[str]:
        """Every capability the store holds results of (within retention)."""
        if not inspect(self.engine).has_table(counters_t.name):
            return []
        with self.engine.connect() as conn:
            return list(conn.execute(select(counters_t.c.capability).distinct()
                                     .order_by(counters_t.c.capability)).scalars())

    def snapshot(self, capability: str | None = None, since: float | None = None) -> Snapshot:
        """Aggregates for a report; an empty Snapshot when no proxy has written yet."""
        snap = Snapshot()
        if not inspect(self.engine).has_table(counters_t.name):
            return snap
        since_bucket = _bucket(since) if since is not None else None

        def scoped(table: Table, *columns, group: Iterable = ()):
            query = select(*columns)
            if capability is not None:
                query = query.where(table.c.capability == capability)
            if since_bucket is not None:
                col = table.c.at if table is samples_t else table.c.bucket
                query = query.where(col >= (since if table is samples_t else since_bucket))
            return query.group_by(*group) if group else query

        c, f, s, lt, sm = counters_t.c, fields_t.c, signatures_t.c, latency_t.c, samples_t.c
        with self.engine.connect() as conn:
            # One read transaction, so counters, fields and signatures agree even while
            # proxies keep flushing (SQLite in WAL mode and PostgreSQL both give a snapshot).
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")
            else:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            snap.counters = [tuple(r) for r in conn.execute(
                scoped(counters_t, c.capability, c.route, c.bucket, c.name, c.value))]
            snap.fields = [tuple(r) for r in conn.execute(scoped(
                fields_t, f.capability, f.route, f.field, func.sum(f.raw), func.sum(f.noise),
                group=(f.capability, f.route, f.field)))]
            snap.signatures = [tuple(r) for r in conn.execute(scoped(
                signatures_t, s.capability, s.route, s.bucket, s.status_mismatch, s.fields,
                s.count))]
            snap.latency = [tuple(r) for r in conn.execute(scoped(
                latency_t, lt.capability, lt.route, lt.side, lt.bin, func.sum(lt.count),
                group=(lt.capability, lt.route, lt.side, lt.bin)))]
            snap.samples = [tuple(r) for r in conn.execute(
                scoped(samples_t, sm.capability, sm.route, sm.field, sm.at, sm.data)
                .order_by(sm.id.desc()))]
        return snap


@lru_cache(maxsize=4096)
def _signature(status_mismatch: bool, raw: tuple[str, ...]) -> tuple[str, str]:
    """The stored form of a set of differing fields and its digest. Cached: a route differs in
    the same few sets again and again (most often none), and this ran for every comparison."""
    fields = list(raw)
    if len(fields) > MAX_SIGNATURE_FIELDS:
        fields = fields[:MAX_SIGNATURE_FIELDS] + [OVERFLOW_FIELD]
    signature = json.dumps(fields, ensure_ascii=False)
    return signature, hashlib.sha1(f"{status_mismatch}|{signature}".encode()).hexdigest()


def _fit(text: str, limit: int) -> str:
    """Keys longer than their column are cut (marked), so one odd key cannot fail a flush."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _bucket(at: float | None) -> int:
    at = time.time() if at is None else at
    return int(at // BUCKET_S) * BUCKET_S
