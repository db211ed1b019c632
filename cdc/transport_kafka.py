"""Kafka transport through confluent-kafka: an EventSink for capture, an EventSource for apply.

Producer: idempotent, `acks=all`, keyed by the JSON of the primary key (murmur2, as Java
clients partition) so each row's changes stay in order in one partition; `flush()` raises if any
delivery failed, so capture never acknowledges WAL for events Kafka does not hold. Topics are
created explicitly with the configured partition count.

Consumer: one consumer group per apply (so apply scales out by adding members),
`enable.auto.commit=false`; on assignment each partition seeks to the offset stored in the
target database, which apply commits in the same transaction as the rows. The offset is also
committed to Kafka afterwards, only so standard lag tooling can see it. Offsets count in one
incarnation of a topic: apply stores the topic's id (KIP-516) beside them, and a topic deleted and
re-created since (a new id) is read from its beginning, not from an offset that counted in the old
one (which would skip every event below it once the new topic has grown past it); re-read events
are no-ops by their source positions. A running consumer is not told of a re-creation (it goes on
at its old position in the new topic), so the source also asks for the ids every ID_CHECK_EVERY_S.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import orjson
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicCollection, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from cdc.envelope import decode, encode
from cdc.events import ChangeEvent
from cdc.records import Record

if TYPE_CHECKING:
    from cdc.apply import Dead

log = logging.getLogger(__name__)
POSITION_HEADER = "strangler.position"
ID_CHECK_EVERY_S = 5.0      # how soon a topic re-created under a running source is noticed

class _Repeats(logging.Filter):
    """librdkafka logs a failing connection again at every retry, several a second while a
    broker is down: each line (numbers aside) passes once a minute, so an outage is told
    without burying everything else in the log."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = _DIGITS.sub("#", record.getMessage())
        now = time.monotonic()
        if now - self._last.get(key, -self.every_s) < self.every_s:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


_DIGITS = re.compile(r"\d+")
# Every client's own log goes here (not straight to stderr, where librdkafka writes by default).
KAFKA_LOG = logging.getLogger("cdc.kafka")
KAFKA_LOG.addFilter(_Repeats())

PRODUCER_DEFAULTS: dict[str, Any] = {
    "logger": KAFKA_LOG,
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 10,                       # a short wait fills batches at high rates
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "partitioner": "murmur2_random",        # same partition for a key as the Java clients
    "delivery.report.only.error": True,     # callbacks only for failures: no per-event cost
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "logger": KAFKA_LOG,
    "enable.auto.commit": False,
    # A stored offset past the end of a partition (topic re-created, broker data lost) names
    # nothing in this log: read it whole, the stale check makes re-read events no-ops.
    "auto.offset.reset": "earliest",
    "fetch.min.bytes": 1,
    "fetch.wait.max.ms": 50,
    "queued.min.messages": 100_000,
    # A crashed apply's partitions move to a live member after this long (default 45 s).
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 2_000,
}


class TransportError(Exception):
    """The transport could not make events durable (capture must not acknowledge them)."""


def unreachable(bootstrap: str, timeout_s: float = 5.0) -> str | None:
    """Why the broker at BOOTSTRAP does not answer within TIMEOUT_S, or None when it does.
    librdkafka's own retry log is kept quiet meanwhile: the caller says it once, plainly."""
    quiet = logging.getLogger("cdc.kafka.probe")
    quiet.propagate, quiet.disabled = False, True
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": quiet})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0]
        return error.str() if isinstance(error, KafkaError) else str(error)
    return None


def ensure_topics(bootstrap: str, topics: list[str], partitions: int, replication: int = 1,
                  timeout_s: float = 30.0) -> None:
    """Create the topics that are missing, with `partitions` partitions each."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": KAFKA_LOG})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=replication)
              for t in topics if t not in existing]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TransportError(f"cannot create topic {topic}: {exc.args[0].str()}") from None


def _dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON: the same bytes json.dumps(separators=(",", ":"), ensure_ascii=False)
    gives for a key, so a row keeps its partition across versions."""
    return orjson.dumps(obj, default=str)


def _delivery_reporter(errors: list[str], lock: threading.Lock) -> Callable[[Any, Any], None]:
    """The producer's delivery callback. Not a bound method: a producer referring to its sink
    would form a cycle, and one replaced by reset() would live (and log) until the GC ran."""
    def delivered(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            with lock:
                errors.append(f"{msg.topic()}: {err.str()}")
    return delivered


class KafkaSink:
    """EventSink: produce Debezium events; `flush` returns once all are acknowledged by Kafka."""

    def __init__(self, bootstrap: str, *, partitions: int = 3, replication: int = 1,
                 config: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.replication = replication
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._config = {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS,
                        "on_delivery": _delivery_reporter(self._errors, self._lock), **(config or {})}
        self._topics: set[str] = set()
        self._producer = Producer(self._config)
        self._sent = 0

    def reset(self) -> None:
        """Start over with a fresh producer after a failed delivery (capture re-reads from its slot)."""
        self._producer.purge()
        self._producer.flush(0)
        with self._lock:
            self._errors.clear()
        self._producer = Producer(self._config)

    def send(self, event: ChangeEvent, headers: dict[str, str] | None = None) -> None:
        if self._errors:        # something sent earlier is lost: the sender must resend from durable state
            raise TransportError(f"an earlier event was not delivered ({self._errors[0]}); call reset()")
        if event.topic not in self._topics:
            ensure_topics(self.bootstrap, [event.topic], self.partitions, self.replication)
            self._topics.add(event.topic)
        key = _dumps(event.key) if event.key is not None else None
        value = encode(event.value)
        fields = [(POSITION_HEADER, str(event.position).encode())]
        fields += [(name, text.encode()) for name, text in (headers or {}).items()]
        while True:
            try:
                self._producer.produce(event.topic, value, key, headers=fields)
                break
            except BufferError:                 # local queue full: let deliveries drain
                self._producer.poll(0.05)
        self._sent += 1
        if self._sent % 1000 == 0:
            self._producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        remaining = self._producer.flush(timeout_s)
        with self._lock:
            errors = list(self._errors)
        if errors:
            raise TransportError(f"{len(errors)} event(s) not delivered, first: {errors[0]}")
        if remaining:
            raise TransportError(f"{remaining} event(s) still in flight after {timeout_s}s")

    def close(self) -> None:
        self._producer.flush(10)


class DeadLetterTopic:
    """Copies each poison event to `<topic>.dlq` (Kafka Connect's naming), the original key and
    value with the reason in headers, so Kafka tooling sees them too.

    The dead-letter table in the target stays what `strangler cdc dlq` lists and replays: it
    commits with the offsets that skip the event. The copy is sent once that commit is done; if
    the broker cannot take it then, it is logged and skipped rather than stopping apply.
    """

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self._sink = KafkaSink(bootstrap, partitions=partitions)

    def send(self, dead: list["Dead"]) -> None:
        # `lookup` letters wait for a row still on its way and the pipeline retries them itself:
        # only poison is copied.
        dead = [d for d in dead if d.kind != "lookup"]
        if not dead:
            return
        try:
            for d in dead:
                r = d.record
                self._sink.send(ChangeEvent(f"{r.topic}.dlq", r.event.key, r.event.value, r.event.position),
                                {"strangler.dlq.kind": d.kind, "strangler.dlq.reason": d.reason,
                                 "strangler.dlq.topic": r.topic, "strangler.dlq.partition": str(r.partition),
                                 "strangler.dlq.offset": str(r.offset)})
            self._sink.flush(10)
        except (TransportError, KafkaException) as exc:
            log.warning("dead letters kept in the table but not copied to Kafka: %s", exc)
            self._sink.reset()

    def close(self) -> None:
        self._sink.close()


def topic_ids(admin: AdminClient, topics: set[str], timeout_s: float = 10.0) -> dict[str, str]:
    """Each topic's id, for those the broker describes (a topic it cannot is left out)."""
    if not topics:
        return {}
    found: dict[str, str] = {}
    futures = admin.describe_topics(TopicCollection(sorted(topics)), request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            found[name] = str(future.result().topic_id)
        except KafkaException as exc:
            log.warning("cannot learn the id of topic %s (%s): its stored offsets are used "
                        "unchecked", name, exc.args[0].str() if exc.args else exc)
    return found


class KafkaSource:
    """EventSource: a consumer-group member that starts each partition at the stored offset,
    or at the beginning of a topic re-created since that offset was stored."""

    def __init__(self, bootstrap: str, group: str, topics: list[str],
                 stored_offsets: Callable[[], dict[tuple[str, int], int]],
                 stored_topic_ids: Callable[[], dict[str, str]] = dict,
                 *, config: dict[str, Any] | None = None,
                 id_check_every_s: float = ID_CHECK_EVERY_S) -> None:
        self._stored_offsets = stored_offsets
        self._stored_topic_ids = stored_topic_ids
        self._admin = AdminClient({"bootstrap.servers": bootstrap, "logger": KAFKA_LOG})
        self._ids: dict[str, str] = {}
        self._id_check_every_s = id_check_every_s
        self._next_id_check = time.monotonic() + id_check_every_s
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                   **CONSUMER_DEFAULTS, **(config or {})})
        self._consumer.subscribe(topics, on_assign=self._on_assign)
        self.assigned: list[tuple[str, int]] = []

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self._stored_offsets()
        current = topic_ids(self._admin, {p.topic for p in partitions})
        recreated: set[str] = set()
        for topic, old in self._stored_topic_ids().items():
            if topic in current and current[topic] != old:
                log.warning("topic %s was re-created since apply stored its offsets (id %s, now "
                            "%s): reading it from its beginning; events already applied are "
                            "skipped by their source positions", topic, old, current[topic])
                recreated.add(topic)
        for p in partitions:
            offset = stored.get((p.topic, p.partition))
            p.offset = OFFSET_BEGINNING if offset is None or p.topic in recreated else offset
        self._ids.update(current)
        consumer.assign(partitions)
        self.assigned = [(p.topic, p.partition) for p in partitions]

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        out: list[Record] = []
        for msg in self._consumer.consume(max_records, timeout_s):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise TransportError(f"consume failed: {err.str()}")
                continue    # broker down, topic not yet in the metadata...: librdkafka retries by itself
            raw_key, raw_value = msg.key(), msg.value()
            value = decode(raw_value)
            position = _position(msg.headers(), value)
            topic = msg.topic()
            out.append(Record(topic, msg.partition(), msg.offset(),
                              ChangeEvent(topic, decode(raw_key) if raw_key else None, value,
                                          position), self._ids.get(topic)))
        if time.monotonic() >= self._next_id_check:
            out = self._check_ids(out)
        return out

    def _check_ids(self, out: list[Record]) -> list[Record]:
        """librdkafka reads a topic re-created under it from its old position (librdkafka
        #3255): seek such a topic's partitions to the beginning and drop what this poll read.
        A seek the client refuses is tried again at the next check (the old id is kept)."""
        self._next_id_check = time.monotonic() + self._id_check_every_s
        current = topic_ids(self._admin, {topic for topic, _ in self.assigned})
        changed = {t for t, new in current.items() if self._ids.get(t, new) != new}
        for topic in changed:
            log.warning("topic %s was re-created while apply read it (id %s, now %s): reading it "
                        "again from its beginning", topic, self._ids[topic], current[topic])
            try:
                for t, partition in self.assigned:
                    if t == topic:
                        self._consumer.seek(TopicPartition(t, partition, OFFSET_BEGINNING))
            except KafkaException as exc:
                log.warning("cannot seek topic %s back yet (%s); trying again in %g s", topic,
                            exc.args[0].str() if exc.args else exc, self._id_check_every_s)
                del current[topic]
        self._ids.update(current)
        return [r for r in out if r.topic not in changed]

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        if offsets:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                  asynchronous=True)

    def close(self) -> None:
        self._consumer.close()


def _position(headers: list[tuple[str, bytes]] | None, value: dict[str, Any] | None) -> int:
    for name, data in headers or ():
        if name == POSITION_HEADER:
            return int(data)
    if value is not None:                   # events produced by another Debezium-speaking tool
        return int((value.get("source") or {}).get("lsn") or 0)
    return 0
