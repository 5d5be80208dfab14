"""Integration helpers of the gateway: the app over the real Kafka publisher (of ``settings.kafka_client``), and
reading topics back."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import falcon.testing

from eventpipe.settings import Settings
from ingest_gateway.app import create_app
from ingest_gateway.keystore import KeyStore, create_key
from ingest_gateway.publisher import Publisher, make_publisher


@dataclasses.dataclass
class Gateway:
    settings: Settings
    client: falcon.testing.TestClient
    publisher: Publisher
    key: str
    other_key: str


def consume(settings: Settings, topic: str, count: int, timeout_s: float = 30.0) -> list:
    """The first ``count`` records of ``topic`` (all partitions), waiting up to ``timeout_s``; fewer on timeout."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None)
    try:
        # Finding the partitions gets its own allowance: right after a broker restart metadata can be slow.
        deadline = time.monotonic() + 30
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.2)
        assert partitions, f"topic {topic} has no partitions in the metadata"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # A short extra poll so a test can also see that nothing *more* arrived.
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def make_gateway(settings: Settings, tmp_path: Path, **overrides) -> Gateway:
    settings = dataclasses.replace(settings, home=str(tmp_path), keys_file=str(tmp_path / "keys.json"), **overrides)
    key, _ = create_key(settings.keys_path, "acme")
    other, _ = create_key(settings.keys_path, "globex")
    publisher = make_publisher(settings)
    app = create_app(settings, KeyStore(settings.keys_path), publisher)
    return Gateway(settings, falcon.testing.TestClient(app), publisher, key, other)
