"""Wires capture -> transport -> apply for one direction of one capability, from its config.

Capture and apply are independent loops (threads here, or separate processes with
`strangler cdc run --only capture|apply`); each survives its database or broker going away
by reconnecting and resuming from what is durable: capture from the slot's acknowledged LSN,
apply from the offsets stored in the target. Neither keeps state that a crash could lose.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from cdc import dlq
from cdc.apply import Applier, Outcome
from cdc.config import CdcConfig, Route
from cdc.mapping import TO_SERVICE
from cdc.events import EventSink
from cdc.records import EventSource
from cdc.store import TargetStore
from strangler.db import normalise_url
from strangler.errors import OperatorError

log = logging.getLogger(__name__)
LOOKUP_RETRY_S = 2.0


def backend(url: str) -> str:
    return make_url(normalise_url(url)).get_backend_name()


def make_sink(config: CdcConfig) -> EventSink:
    t = config.transport
    if t.kind == "kafka":
        from cdc.transport_kafka import KafkaSink
        return KafkaSink(t.bootstrap, partitions=t.partitions)
    from cdc.transport_embedded import EmbeddedSink
    return EmbeddedSink(t.path)


def make_source(config: CdcConfig, route: Route, applier: Applier) -> EventSource:
    t = config.transport
    if t.kind == "kafka":
        from cdc.transport_kafka import KafkaSource, ensure_topics
        ensure_topics(t.bootstrap, route.topics, t.partitions)
        return KafkaSource(t.bootstrap, route.name, route.topics, applier.stored_offsets,
                           applier.stored_topic_ids)
    from cdc.transport_embedded import EmbeddedSource
    return EmbeddedSource(t.path, route.name, route.topics, applier.stored_offsets)


def make_capture(config: CdcConfig, route: Route, sink: EventSink):
    """The capture for the route's source database (PostgreSQL slot or SQLite triggers)."""
    tables = [f"{route.source.schema}.{t}" for t in route.source_tables]
    if backend(route.source.url) == "postgresql":
        from cdc.capture_pg import PgCapture
        return PgCapture(route.source.url, route.slot, route.slot, tables, route.source.topic_prefix, sink)
    from cdc.capture_sqlite import SqliteCapture
    return SqliteCapture(route.source.url, list(route.source_tables), route.source.topic_prefix, sink,
                         slot=route.slot)


def make_applier(config: CdcConfig, route: Route) -> Applier:
    store = TargetStore(route.target.url)
    try:
        return Applier(store, config.mapping, route.direction, route.name)
    except BaseException:
        store.close()           # else its session (and replication origin) outlives the failure
        raise


@dataclass
class ApplyStats:
    """In-process figures of the apply loop (the durable ones live in the target's tables)."""
    events: int = 0
    dead: int = 0
    lags_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))   # the most recent batches

    def record(self, outcome: Outcome) -> None:
        self.events += outcome.applied
        self.dead += len(outcome.dead)
        self.lags_ms.extend(outcome.lag_ms().values())


class ApplyLoop:
    """poll -> apply (rows + offsets in one transaction) -> tell the transport; forever."""

    def __init__(self, config: CdcConfig, route: Route, *, retry_lookups: bool = True) -> None:
        self.config, self.route = config, route
        self.retry_lookups = retry_lookups      # one member per direction retries dead letters
        self.dead_letter_topic = None
        if config.transport.kind == "kafka":
            from cdc.transport_kafka import DeadLetterTopic
            self.dead_letter_topic = DeadLetterTopic(config.transport.bootstrap, config.transport.partitions)
        self.stats = ApplyStats()
        self.caught_up = threading.Event()       # set whenever a poll comes back empty

    def run(self, stop: threading.Event) -> None:
        started = False
        while not stop.is_set():
            applier = source = None
            try:
                applier = make_applier(self.config, self.route)
                source = make_source(self.config, self.route, applier)
                started = True
                self._loop(stop, applier, source)
            except OperatorError:
                if not started:             # misconfigured from the start: say so and stop
                    raise
                log.warning("apply %s cannot reconnect yet; retrying", self.route.name)
                stop.wait(1.0)
            except Exception as exc:  # noqa: BLE001 - reconnect and resume from stored offsets
                log.warning("apply %s failed, resuming from stored offsets: %s", self.route.name, exc)
                stop.wait(1.0)
            finally:
                for closable in (source, applier and applier.store):
                    if closable is not None:
                        try:
                            closable.close()
                        except Exception:  # noqa: BLE001 - already broken
                            pass

    def _loop(self, stop: threading.Event, applier: Applier, source: EventSource) -> None:
        last_retry = time.monotonic()
        while not stop.is_set():
            records = source.poll(self.config.batch_size, 0.2)
            if records:
                self.caught_up.clear()
                outcome = applier.apply(records)
                source.committed(outcome.offsets)
                if self.dead_letter_topic is not None:
                    self.dead_letter_topic.send(outcome.dead)
                self.stats.record(outcome)
            else:
                self.caught_up.set()
            if self.retry_lookups and time.monotonic() - last_retry >= LOOKUP_RETRY_S:
                last_retry = time.monotonic()
                self.stats.events += dlq.retry_lookups(applier)


class CaptureLoop:
    """Run capture (snapshot first unless told not to), reconnecting after failures."""

    def __init__(self, config: CdcConfig, route: Route, sink: EventSink, *, snapshot: bool = True) -> None:
        self.config, self.route, self.sink, self.snapshot = config, route, sink, snapshot
        self.capture = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.capture = make_capture(self.config, self.route, self.sink)
                self.capture.ensure_setup()
                if self.snapshot:
                    self.capture.snapshot()
                self.capture.run(stop)
            except OperatorError:
                raise
            except Exception as exc:  # noqa: BLE001 - resume from the acknowledged LSN
                log.warning("capture %s failed, resuming from the slot: %s", self.route.name, exc)
                reset = getattr(self.sink, "reset", None)
                if reset:
                    reset()             # drop what was not delivered: the slot re-sends it
                stop.wait(1.0)
            finally:
                if self.capture is not None:
                    try:
                        self.capture.close()
                    except Exception:  # noqa: BLE001
                        pass


class Pipeline:
    """Capture and apply of the chosen directions, each loop in its own thread."""

    def __init__(self, config: CdcConfig, directions: list[str], *, parts=("capture", "apply"),
                 snapshot: bool = True) -> None:
        self.config = config
        self.routes = [config.route(d) for d in directions]
        # Several members of one consumer group share a direction's partitions: one member's
        # database round trip overlaps another's decoding and mapping.
        self.applies = [ApplyLoop(config, r, retry_lookups=i == 0) for r in self.routes
                        for i in range(config.apply_members)] if "apply" in parts else []
        self.sinks = [make_sink(config) for _ in self.routes] if "capture" in parts else []
        # Only legacy -> service starts with a snapshot: it fills the new store. Legacy already
        # holds the data, and a snapshot of the service re-sent to it could overwrite legacy writes
        # not yet carried forward; service -> legacy streams from its slot's creation (run it
        # (`--direction both`) before the service takes writes, so that slot already exists).
        self.captures = [CaptureLoop(config, r, s, snapshot=snapshot and r.direction == TO_SERVICE)
                         for r, s in zip(self.routes, self.sinks)]
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self) -> "Pipeline":
        for loop in [*self.captures, *self.applies]:
            t = threading.Thread(target=self._guard, args=(loop,), daemon=True,
                                 name=f"cdc-{type(loop).__name__}-{loop.route.name}")
            t.start()
            self.threads.append(t)
        return self

    def _guard(self, loop) -> None:
        try:
            loop.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - surfaced by wait()/close()
            self.errors.append(exc)
            self.stop.set()

    def wait(self, timeout_s: float | None = None) -> None:
        self.stop.wait(timeout_s)
        if self.errors:
            raise self.errors[0]

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        for sink in [*self.sinks, *(a.dead_letter_topic for a in self.applies)]:
            close = getattr(sink, "close", None)
            if close:
                close()
        if self.errors:
            raise self.errors[0]
