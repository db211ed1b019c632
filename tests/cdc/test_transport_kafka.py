"""The Kafka transport against the real broker: keys, tombstones, partitions, offsets, failures, groups."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from cdc.events import ChangeEvent
from cdc.transport_kafka import KafkaSink, KafkaSource, TransportError, ensure_topics, topic_ids


@pytest.fixture
def topic(kafka_bootstrap):
    name = f"t{uuid.uuid4().hex[:10]}.public.products"
    yield name
    AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics([name])


def _event(topic: str, i: int, value: dict | None = None) -> ChangeEvent:
    key = {"id": i % 5}
    return ChangeEvent(topic, key, {"op": "u", "after": {"id": i % 5, "n": i}, "source": {"lsn": i}}
                       if value is None else value, i)


def _drain(source: KafkaSource, n: int, deadline_s: float = 30.0) -> list:
    out: list = []
    end = time.monotonic() + deadline_s
    while len(out) < n and time.monotonic() < end:
        out += source.poll(1000, 0.5)
    return out


def test_events_round_trip_keyed_in_order_with_tombstones(kafka_bootstrap, topic):
    sink = KafkaSink(kafka_bootstrap, partitions=3)
    events = [_event(topic, i) for i in range(50)] + [ChangeEvent(topic, {"id": 1}, None, 99)]
    for ev in events:
        sink.send(ev)
    sink.flush(30)
    meta = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(topic, timeout=10)
    assert len(meta.topics[topic].partitions) == 3

    source = KafkaSource(kafka_bootstrap, f"g{uuid.uuid4().hex[:8]}", [topic], lambda: {})
    try:
        got = _drain(source, len(events))
    finally:
        source.close()
    assert sorted((r.event.position, json.dumps(r.event.key), json.dumps(r.event.value)) for r in got) == \
        sorted((e.position, json.dumps(e.key), json.dumps(e.value)) for e in events)
    by_key: dict[int, list] = {}
    for r in got:
        by_key.setdefault(r.event.key["id"], []).append(r)
    for records in by_key.values():
        assert len({r.partition for r in records}) == 1                 # one key, one partition
        ordered = sorted(records, key=lambda r: r.offset)
        assert [r.event.position for r in ordered] == sorted(r.event.position for r in records)
    assert [r.event.value for r in got if r.event.position == 99] == [None]


def test_consumer_starts_each_partition_at_the_stored_offset(kafka_bootstrap, topic):
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    sink = KafkaSink(kafka_bootstrap, partitions=1)
    for i in range(10):
        sink.send(_event(topic, i))
    sink.flush(30)
    source = KafkaSource(kafka_bootstrap, f"g{uuid.uuid4().hex[:8]}", [topic], lambda: {(topic, 0): 7})
    try:
        got = _drain(source, 3)
        time.sleep(0.5)
        got += source.poll(100, 0.5)
    finally:
        source.close()
    assert [r.offset for r in got] == [7, 8, 9]


def test_a_stored_offset_past_the_end_of_the_log_reads_the_log_whole(kafka_bootstrap, topic):
    """The topic was re-created (or its broker lost data) since apply stored offset 500: that
    offset names nothing in this log, so the consumer starts over rather than skip to the end."""
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    sink = KafkaSink(kafka_bootstrap, partitions=1)
    for i in range(4):
        sink.send(_event(topic, i))
    sink.flush(30)
    source = KafkaSource(kafka_bootstrap, f"g{uuid.uuid4().hex[:8]}", [topic], lambda: {(topic, 0): 500})
    try:
        got = _drain(source, 4)
    finally:
        source.close()
    assert [r.offset for r in got] == [0, 1, 2, 3]


def _produce(bootstrap: str, topic: str, numbers: range) -> None:
    sink = KafkaSink(bootstrap, partitions=1)
    for i in numbers:
        sink.send(_event(topic, i))
    sink.flush(30)


def _read_stored(bootstrap: str, topic: str, offsets: dict, ids: dict, count: int) -> list:
    """`count` records read by a new group member given apply's stored offsets and topic ids."""
    source = KafkaSource(bootstrap, f"g{uuid.uuid4().hex[:8]}", [topic], lambda: offsets,
                         lambda: ids)
    try:
        return _drain(source, count)
    finally:
        source.close()


def _recreate(bootstrap: str, topic: str, old_id: str, deadline_s: float = 60.0) -> str:
    """Delete the topic and create it again under the same name; its new id."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic])[topic].result(30)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            ensure_topics(bootstrap, [topic], partitions=1)
            new = topic_ids(admin, {topic}).get(topic)
            if new is not None and new != old_id:
                return new
        except Exception:            # still being deleted: the broker refuses the name a moment
            pass
        time.sleep(0.2)
    raise AssertionError(f"{topic} was not re-created within {deadline_s}s")


def test_a_topic_re_created_since_its_offsets_were_stored_is_read_from_its_beginning(
        kafka_bootstrap, topic):
    """Apply stored offset 7 in the old topic. The new one has grown past 7 by the time apply
    starts, so that offset is in range and the consumer would silently skip its first 7 events;
    the topic id stored beside the offset says it counted in another topic."""
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    _produce(kafka_bootstrap, topic, range(10))
    old_id = topic_ids(AdminClient({"bootstrap.servers": kafka_bootstrap}), {topic})[topic]
    stored = ({(topic, 0): 7}, {topic: old_id})

    got = _read_stored(kafka_bootstrap, topic, *stored, count=3)
    assert [(r.offset, r.topic_id) for r in got] == [(7, old_id), (8, old_id), (9, old_id)]

    new_id = _recreate(kafka_bootstrap, topic, old_id)
    _produce(kafka_bootstrap, topic, range(100, 112))
    got = _read_stored(kafka_bootstrap, topic, *stored, count=12)
    assert [r.offset for r in got] == list(range(12))
    assert [r.event.position for r in got] == list(range(100, 112))
    assert {r.topic_id for r in got} == {new_id}


def test_a_topic_re_created_under_a_running_source_is_read_again_from_its_beginning(
        kafka_bootstrap, topic):
    """librdkafka goes on at its old position in the new topic (here it read 5-11 and never
    0-4); the source's periodic id check seeks the topic back to its beginning."""
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    _produce(kafka_bootstrap, topic, range(5))
    source = KafkaSource(kafka_bootstrap, f"g{uuid.uuid4().hex[:8]}", [topic], dict, dict,
                         id_check_every_s=0.2)
    try:
        old_id = {r.topic_id for r in _drain(source, 5)}.pop()
        new_id = _recreate(kafka_bootstrap, topic, old_id)
        _produce(kafka_bootstrap, topic, range(100, 112))
        got = _drain(source, 12)
    finally:
        source.close()
    assert [(r.offset, r.event.position) for r in got] == list(zip(range(12), range(100, 112)))
    assert {r.topic_id for r in got} == {new_id}


def test_flush_raises_when_the_broker_refuses_an_event(kafka_bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "2000"})])[topic].result(30)
    sink = KafkaSink(kafka_bootstrap, config={"compression.type": "none"})
    sink.send(_event(topic, 1))
    sink.send(_event(topic, 2, {"op": "c", "after": {"blob": "x" * 50_000}}))
    with pytest.raises(TransportError, match="not delivered"):
        sink.flush(30)
    # Nothing more is accepted until the sender resets (and re-sends from its durable position).
    with pytest.raises(TransportError, match="call reset"):
        sink.send(_event(topic, 3))
    sink.reset()
    sink.send(_event(topic, 3))
    sink.flush(30)


def test_two_apply_members_of_one_group_share_the_partitions(kafka_bootstrap, topic):
    ensure_topics(kafka_bootstrap, [topic], partitions=4)
    group = f"g{uuid.uuid4().hex[:8]}"
    fast = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    a = KafkaSource(kafka_bootstrap, group, [topic], lambda: {}, config=fast)
    b = KafkaSource(kafka_bootstrap, group, [topic], lambda: {}, config=fast)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not (a.assigned and b.assigned
                                               and len(a.assigned) + len(b.assigned) == 4):
            a.poll(10, 0.2)
            b.poll(10, 0.2)
        assert sorted(a.assigned + b.assigned) == [(topic, p) for p in range(4)]
        assert not set(a.assigned) & set(b.assigned)
    finally:
        a.close()
        b.close()


def test_a_broker_that_is_down_is_logged_once_a_minute_not_at_every_retry(capfd, caplog):
    """librdkafka retries a refused connection several times a second and, left alone, writes
    each retry to stderr: its lines go through the `cdc.kafka` logger, each once a minute."""
    import logging

    from tests.conftest import free_port
    port = free_port()                                   # nothing listens there
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)
    keep = Keep()
    logging.getLogger("cdc.kafka").addHandler(keep)
    consumer = KafkaSource(f"127.0.0.1:{port}", f"g-{uuid.uuid4().hex[:8]}", ["t"], dict,
                           config={"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 50})
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:           # ~60 connection attempts
            consumer.poll(100, 0.2)
    finally:
        consumer.close()
        logging.getLogger("cdc.kafka").removeHandler(keep)
    refused = [r for r in seen if f"127.0.0.1:{port}" in r.getMessage()]
    assert 1 <= len(refused) <= 3, [r.getMessage() for r in seen]
    assert "rdkafka" not in capfd.readouterr().err
