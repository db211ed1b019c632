"""The broker `make test` starts carries a message end to end through the project's Kafka client."""
from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def test_message_round_trips_through_a_fresh_topic(kafka_bootstrap):
    topic = f"infra-smoke-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    try:
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        delivered = []
        producer.produce(topic, key=b"order-42", value=b'{"total": "9.99"}',
                         on_delivery=lambda err, msg: delivered.append(err))
        assert producer.flush(30) == 0
        assert delivered == [None]

        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        try:
            consumer.subscribe([topic])
            message = None
            for _ in range(60):
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    break
            assert message is not None and message.error() is None
            assert message.key() == b"order-42"
            assert message.value() == b'{"total": "9.99"}'
            assert message.topic() == topic
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])[topic].result(30)
