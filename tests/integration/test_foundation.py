"""The foundation against the real servers: Avro through Kafka, rows through ClickHouse, idempotent set-up."""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from deploy import procs
from deploy.migrate import client, migrate
from deploy.procs import DeployError, Service
from deploy.topics import ensure_topics
from eventpipe.codec import EVENT
from eventpipe.settings import Settings


def test_an_avro_event_round_trips_through_kafka(settings: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    record = {"account_id": "acc", "event_id": uuid.uuid4().hex, "action": "START", "type": "APPSTART",
              "timestamp": 1365772427, "session": "8nc92io9q", "entities": [{"key": "app", "value": '"BigBrother"'}],
              "received_at": 1_700_000_000_000, "source": "kafka"}
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    meta = producer.send(settings.topic_events, key=b"acc", value=EVENT.encode(record)).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    tp = TopicPartition(settings.topic_events, meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    messages = []
    deadline = time.monotonic() + 30
    while not messages and time.monotonic() < deadline:
        messages = consumer.poll(timeout_ms=1000).get(tp, [])
    consumer.close()
    decoded = EVENT.decode(messages[0].value)
    assert decoded["event_id"] == record["event_id"] and decoded["entities"] == record["entities"]


def test_topics_have_the_configured_partitions_and_creation_is_idempotent(settings: Settings) -> None:
    from kafka import KafkaConsumer

    assert ensure_topics(settings) == []
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        for topic in settings.topics:
            assert len(consumer.partitions_for_topic(topic)) == settings.topic_partitions
    finally:
        consumer.close()


def test_a_row_round_trips_through_clickhouse_and_migrations_apply_once(settings: Settings) -> None:
    ch = client(settings, settings.clickhouse_database)
    ch.execute("CREATE TABLE roundtrip (id UInt64, tags Array(String), at DateTime) ENGINE = MergeTree() ORDER BY id")
    ch.execute("INSERT INTO roundtrip VALUES", [(1, ["a", "b"], 1365772427)])
    assert ch.execute("SELECT id, tags, toUnixTimestamp(at) FROM roundtrip") == [(1, ["a", "b"], 1365772427)]
    assert migrate(settings) == []  # the fixture applied everything already
    applied = [r[0] for r in ch.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert applied == sorted(p.name for p in (Path(__file__).parents[2] / "schemas" / "clickhouse").glob("*.sql"))


def _sleeper(tmp_path: Path, name: str, ready=lambda: True, ports=()) -> Service:
    marker = f"eventpipe-test-{uuid.uuid4().hex}"
    return Service(name=name, argv=[sys.executable, "-c", "import time,sys; time.sleep(600)", marker],
                   run_dir=tmp_path, log_file=tmp_path / f"{name}.log", marker=marker, ready=ready,
                   ready_timeout_s=3, ports=ports, stop_timeout_s=5)


def test_services_are_stopped_by_their_pid_file_and_restart_is_harmless(tmp_path: Path) -> None:
    svc = _sleeper(tmp_path, "sleeper")
    assert procs.start(svc) is True
    pid = procs.running_pid(svc)
    assert pid is not None
    assert procs.start(svc) is False  # already running: left alone
    assert procs.stop(svc) is True
    assert procs.running_pid(svc) is None and not svc.pid_file.exists()
    assert procs.stop(svc) is False


def test_a_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    svc = _sleeper(tmp_path, "sleeper")
    tmp_path.joinpath("sleeper.pid").write_text("1\n")  # pid 1 is not ours: its cmdline lacks the marker
    assert procs.running_pid(svc) is None and procs.stop(svc) is False


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(DeployError, match=f"port {port} on 127.0.0.1 is already taken"):
            procs.start(_sleeper(tmp_path, "clash", ports=(port,)))


def test_a_service_that_never_gets_ready_is_stopped_not_left_half_started(tmp_path: Path) -> None:
    svc = _sleeper(tmp_path, "never", ready=lambda: False)
    with pytest.raises(DeployError, match="not ready after 3s, stopped it"):
        procs.start(svc)
    assert procs.running_pid(svc) is None


def test_an_external_kafka_that_does_not_answer_is_a_clear_error(base_settings: Settings) -> None:
    from deploy.stack import infra_up

    external = dataclasses.replace(base_settings, kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(DeployError, match="no broker answers at EVENTPIPE_KAFKA_BOOTSTRAP=127.0.0.1:1"):
        infra_up(external)


def test_a_kafka_version_maven_cannot_fetch_is_a_clear_error(base_settings: Settings, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy import kafka

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    missing = dataclasses.replace(base_settings, kafka_version="0.0.404")
    with pytest.raises(DeployError, match="(?s)Maven could not fetch Kafka 0.0.404.*EVENTPIPE_KAFKA_BOOTSTRAP"):
        kafka.libs(missing)
    assert not (tmp_path / "eventpipe" / "kafka-0.0.404" / "libs").exists()
