"""Input streams for the consumer tests and the plain reference their results are compared with.

Records are produced with the codec straight to the topics, keyed like the gateway keys them. The reference
reads each partition back from Kafka and runs the worker's processor over it in offset order, in one go, with
no batches, restarts or ClickHouse: the rows the ``*_final`` views must show.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.processors import EventsSink, JoinsWorker, Message, SessionsWorker
from consumers.state import Restored
from eventpipe.codec import EVENT, JOIN_RECORD
from eventpipe.settings import Settings

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
SEED_START, SEED_END = 1365772427, 1365772533
SEED_ENTITIES = [{"key": "app", "value": '"BigBrother"'}, {"key": "package", "value": '"de.thues.bigbrother"'}]
COMPONENTS = [str(uuid.UUID(int=i + 1)) for i in range(4)]
TYPES = [str(uuid.UUID(int=100 + i)) for i in range(2)]


def event(account: str, action: str, ts: int, session: str | None, event_id: str | None = None,
          type_: str = "APPSTART", entities: list | None = None) -> dict[str, Any]:
    return {"account_id": account, "event_id": event_id or uuid.uuid4().hex, "action": action, "type": type_,
            "timestamp": ts, "session": session, "entities": SEED_ENTITIES if entities is None else entities,
            "received_at": RECEIVED, "source": "kafka"}


def join_record(account: str, start_ms: int, component: str = COMPONENTS[0], type_id: str = TYPES[0],
                event_id: str | None = None, interval: float = 600.0, count: int = 1, message: str = "m",
                importance: str = "Alarm", version: str | None = "1.0.0.0", join_key: int = 45648117245) -> dict:
    return {"account_id": account, "record_id": uuid.uuid4().hex, "event_id": event_id, "component_id": component,
            "type_id": type_id, "join_key": join_key, "start_date": datetime.fromtimestamp(start_ms / 1000, timezone.utc),
            "join_interval": interval, "importance": importance, "count": count, "message": message,
            "version": version, "received_at": RECEIVED, "source": "kafka"}


def event_key(record: dict) -> bytes:
    return f"{record['account_id']}|{record['session'] or ''}|{record['type']}".encode()


def join_key(record: dict) -> bytes:
    return f"{record['account_id']}|{record['component_id']}|{record['type_id']}".encode()


class Producer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)

    def events(self, records: Iterable[dict]) -> None:
        for r in records:
            self.producer.send(self.settings.topic_events, key=event_key(r), value=EVENT.encode(r))
        self.producer.flush(30)

    def joins(self, records: Iterable[dict]) -> None:
        for r in records:
            self.producer.send(self.settings.topic_joins, key=join_key(r), value=JOIN_RECORD.encode(r))
        self.producer.flush(30)

    def raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.producer.send(topic, key=key, value=value)
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.close(10)


def random_events(rng: random.Random, n_sessions: int, base: int = SEED_START) -> list[dict]:
    """Sessions of START, UPDATEs and (mostly) END, some sessionless events, shuffled a little within grace
    (minutes, far below the 1 h orphan grace), and ~10 % delivered twice (the same record produced again)."""
    out: list[tuple[int, dict]] = []
    for i in range(n_sessions):
        account = f"acc{rng.randrange(3)}"
        session = f"sess{i:06d}xx"
        start = base + rng.randrange(0, 4 * 3600)
        kind = rng.random()
        evs = []
        if kind > 0.1:
            evs.append(event(account, "START", start, session))
        for u in range(rng.randrange(0, 4)):
            evs.append(event(account, "UPDATE", start + 1 + u, session))
        if kind < 0.8:
            evs.append(event(account, "END", start + rng.randrange(5, 600), session))
        if rng.random() < 0.1:
            evs.append(event(account, "UPDATE", start, None, type_="SCREEN"))
        out += [(e["timestamp"] + rng.randrange(0, 120), e) for e in evs]
    out.sort(key=lambda p: p[0])
    records = [e for _, e in out]
    for r in rng.sample(records, len(records) // 10):
        records.insert(min(len(records), records.index(r) + rng.randrange(1, 20)), r)
    return records


def random_joins(rng: random.Random, n: int, base_ms: int = 1_462_058_743_511) -> list[dict]:
    records, t = [], base_ms
    for _ in range(n):
        t += rng.randrange(0, 400_000)
        records.append(join_record(f"acc{rng.randrange(2)}", t, component=rng.choice(COMPONENTS),
                                   type_id=rng.choice(TYPES), interval=rng.choice([0.0, 300.0, 600.0]),
                                   count=rng.randrange(1, 5), message=f"m{rng.randrange(100)}",
                                   importance=rng.choice(["Alarm", "Warning"])))
    for r in rng.sample(records, n // 10):
        records.append(r)  # duplicate delivery
    return records


def read_topic(settings: Settings, topic: str) -> list[Message]:
    """Every record of ``topic``, partition by partition in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    out: dict[int, list[Message]] = {tp.partition: [] for tp in parts}
    while any(consumer.position(tp) < end[tp] for tp in parts):
        for tp, records in consumer.poll(timeout_ms=1000).items():
            out[tp.partition] += [Message(r.topic, r.partition, r.offset, r.timestamp, r.value) for r in records]
    consumer.close()
    return [m for p in sorted(out) for m in out[p]]


def uncommitted(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Records of ``topic`` the group has not committed yet, by partition (only partitions with some)."""
    from kafka import KafkaAdminClient

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        end = consumer.end_offsets(parts)
        done = {tp: o.offset for tp, o in admin.list_group_offsets({group: None}).get(group, {}).items()}
    finally:
        consumer.close()
        admin.close()
    return {tp.partition: end[tp] - max(0, done.get(tp, 0)) for tp in parts if end[tp] > max(0, done.get(tp, 0))}


def reference_rows(settings: Settings, worker: str) -> list[tuple]:
    """The final rows of ``worker``'s table from one uninterrupted pass over its topic."""
    processor = {"events": EventsSink, "sessions": SessionsWorker, "joins": JoinsWorker}[worker](settings)
    final: dict[Any, tuple] = {}
    for message in read_topic(settings, processor.topic):
        if processor.stateful and message.partition not in processor.machines:
            processor.assign(message.partition, Restored(None, ()))
        # one uninterrupted pass persists nothing, so the machine still holds every tombstone: a look-up finds none
        for partition, keys in processor.prepare([message]).items():
            processor.recall(partition, keys, [])
        for identity, row in processor.handle(message).rows:
            final[identity if identity is not None else (row[0], row[1])] = row
    return sorted(normalise(worker, row) for row in final.values())


def normalise(worker: str, row: tuple) -> tuple:
    """Reference rows in the shape ``final_rows`` reads them back in."""
    if worker == "events":
        return row[:6] + (tuple(row[6]), tuple(row[7])) + row[8:11]
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)  # properties.* arrays


FINAL_QUERIES = {
    "events": "SELECT account_id, event_id, toString(action), type, toUnixTimestamp(event_time), session, "
              "entities.key, entities.value, toUnixTimestamp(received_at), received_at_ms, toString(source) "
              "FROM events_final",
    "sessions": "SELECT account_id, type, session, toString(status), toUnixTimestamp(start_time), "
                "toUnixTimestamp(end_time), duration_s, update_count, row_version FROM sessions_final",
    "joins": "SELECT account_id, event_id, component_id, type_id, join_key, toString(importance), "
             "toUnixTimestamp(start_time), toUnixTimestamp(end_time), toUnixTimestamp(actual_time), start_time_ms, "
             "end_time_ms, actual_time_ms, count, message, version, records, row_version, category, type_system_name, "
             "type_display_name, type_code, properties.name, properties.value, properties.type "
             "FROM joined_events_final",
}


def final_rows(client: Any, worker: str) -> list[tuple]:
    rows = client.execute(FINAL_QUERIES[worker])
    return sorted(tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in rows)
