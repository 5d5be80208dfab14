"""What the workers send ClickHouse, captured from the real code paths, to replay on two ClickHouse versions.

Requests go through the real gateway app (``create_app``, with a publisher that keeps the Kafka records instead
of sending them); the records it would publish go through the real processors and ``consumers.batch.Batch`` in
offset order, flushed every few records the way ``consumers/worker.py`` flushes; every ClickHouse call of that
flush goes through the real ``ClickHouseStore`` — with ``_execute`` recording ``(query, params, kwargs)`` instead
of sending it. A change to a worker's columns, rows or queries therefore changes what is replayed here.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

import falcon.testing

from consumers.batch import Batch
from consumers.clickhouse_io import ClickHouseStore
from consumers.processors import WORKERS, Message
from consumers.state import Checkpoint, Restored
from eventpipe.codec import DEAD_LETTER
from eventpipe.settings import Settings
from ingest_gateway.app import create_app
from ingest_gateway.keystore import KeyStore
from ingest_gateway.records import Message as Published

KEY = "compat-key"
FLUSH_EVERY = 4  # records per batch: rows of one key are rewritten across batches, so FINAL has work to do


@dataclass(frozen=True)
class Call:
    """One ``ClickHouseStore._execute`` call: the query text, its rows or parameters, the driver's kwargs."""

    query: str
    params: Any
    kwargs: dict[str, Any]


class RecordingStore(ClickHouseStore):
    """The consumers' ClickHouse boundary with the network call replaced by a record of it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)  # the driver's Client connects lazily: nothing is opened
        self.calls: list[Call] = []
        self.client.last_query = SimpleNamespace(progress=SimpleNamespace(rows=0))  # what load_state reports read

    def _execute(self, query: str, params: object = None, **kwargs: object) -> list:
        self.calls.append(Call(query, params, dict(kwargs)))
        # what an empty table answers: one row for an aggregate without GROUP BY (the checkpoint read), else none
        return [(b"", 0, 0)] if " GROUP BY " not in query and query.startswith("SELECT argMax") else []

    def _execute_iter(self, query: str, params: object = None, **kwargs: object) -> Iterator[tuple]:
        self.calls.append(Call(query, params, dict(kwargs)))  # the restore's states, streamed: none here
        return iter(())


@dataclass
class KeepingPublisher:
    """The gateway's publisher, keeping every record it is handed (acknowledged at once)."""

    messages: list[Published] = field(default_factory=list)

    def publish(self, messages: Sequence[Published]) -> None:
        self.messages.extend(messages)

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def http_traffic(settings: Settings, now: int) -> list[Published]:
    """Every kind of request the gateway turns into Kafka records; times relative to ``now`` so that the
    "last 7 days" / "today" queries of docs/queries.sql find rows."""
    publisher = KeepingPublisher()
    client = falcon.testing.TestClient(create_app(settings, KeyStore.from_keys({KEY: "compat"}), publisher))
    day = 86_400
    base = now - 3 * day
    values = [{"key": "app", "value": "BigBrother"}, {"key": "package", "value": "de.thues.bigbrother"},
              {"key": "n", "value": 42}, {"key": "f", "value": 1.5}, {"key": "b", "value": True},
              {"key": "z", "value": None}, {"key": "o", "value": {"a": [1, "x"]}}, {"key": "l", "value": [1, 2]},
              {"key": "u", "value": "Grüße \\ 'quoted' \t tab"}]
    batches = [
        # closed, open and orphaned sessions of two types, one evicted by an END, sessionless events, client ids
        [{"action": "START", "type": "APPSTART", "timestamp": base, "session": "sess-closed-1", "entities": values},
         {"action": "UPDATE", "type": "APPSTART", "timestamp": base + 5, "session": "sess-closed-1", "entities": []},
         {"action": "END", "type": "APPSTART", "timestamp": base + 106, "session": "sess-closed-1",
          "entities": values[:1]},
         {"action": "START", "type": "SCREEN", "timestamp": base + 10, "session": "sess-timed-out", "entities": []},
         {"action": "END", "type": "APPSTART", "timestamp": base + 20, "session": "sess-orphan-1", "entities": []},
         {"action": "UPDATE", "type": "APPSTART", "timestamp": base + 30, "entities": values[2:5]}],
        [{"action": "START", "type": "APPSTART", "timestamp": now - 7200, "session": "sess-closed-2",
          "entities": values[:2], "id": "client-chosen-id-1"},
         {"action": "END", "type": "APPSTART", "timestamp": now - 7000, "session": "sess-closed-2",
          "entities": []},
         {"action": "START", "type": "APPSTART", "timestamp": now - 3600, "session": "sess-open-1",
          "entities": values[5:]},
         {"action": "UPDATE", "type": "APPSTART", "timestamp": now - 3590, "session": "sess-open-1",
          "entities": []}],
    ]
    for batch in batches:
        answer = client.simulate_post("/v3/events", json=batch, headers={"X-Api-Key": KEY})
        assert answer.status_code == 200, answer.text
    seed_form = "data=" + json.dumps(batches[0][:1])
    answer = client.simulate_post("/v3/events", body=f"apikey={KEY}&{seed_form}",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text  # the same event again: one row in events_final

    component, type_id = str(uuid.UUID(int=7)), str(uuid.UUID(int=8))
    joins = [{"EventId": str(uuid.UUID(int=9)), "ComponentId": component, "TypeId": type_id, "JoinKey": 45648117245,
              "StartDate": _iso(now - 5400), "JoinInterval": 600, "Importance": "Alarm", "Count": 1,
              "Message": "first", "Version": "1.0.0.0"},
             {"ComponentId": component, "TypeId": type_id, "JoinKey": 45648117245, "StartDate": _iso(now - 5300),
              "JoinInterval": 600, "Importance": "Alarm", "Count": 3, "Message": "joined", "Version": "1.0.0.0"},
             {"ComponentId": component, "TypeId": type_id, "StartDate": _iso(now - 600), "Importance": 100},
             {"TypeId": type_id, "Message": "no ComponentId: ignored, dead-lettered"}]
    _zidium(client, "JoinEvents", joins)
    root = _zidium(client, "GetRootComponent")["Data"]["Id"]
    child = _zidium(client, "GetOrAddComponent", {"ParentComponentId": root, "SystemName": "billing",
                                                   "DisplayName": "Billing", "TypeId": type_id, "Version": "1.2"})
    _zidium(client, "UpdateComponent", {"Id": child["Data"]["Id"], "DisplayName": "Billing service",
                                         "Properties": [{"Name": "host", "Value": "db1", "Type": "String"},
                                                        {"Name": "none", "Value": None, "Type": "String"}]})
    for count in (1, 2):
        _zidium(client, "SendEvent", {
            "ComponentId": child["Data"]["Id"], "TypeSystemName": "java.lang.IllegalStateException in Main.run",
            "TypeDisplayName": "IllegalStateException", "Category": "ApplicationError", "Message": f"declined {count}",
            "StartDate": _iso(now - 1800 + count), "Importance": "Alarm",
            "Properties": [{"Name": "FileName", "Value": "Main.java", "Type": "String"},
                           {"Name": "LineNumber", "Value": "7", "Type": "String"}]})
    return publisher.messages


def _zidium(client: falcon.testing.TestClient, action: str, data: Any = None) -> dict[str, Any]:
    body = {"Token": {"SecretKey": KEY}, **({} if data is None else {"Data": data})}
    answer = client.simulate_post(f"/api/{action}", json=body)
    assert answer.status_code == 200 and answer.json["Code"] == 10, answer.text
    return answer.json


def worker_calls(settings: Settings, published: list[Published]) -> list[Call]:
    """Run every worker over the records (plus a few a Kafka producer could write) and return the ClickHouse
    calls they make: inserts of rows and state, then the restore and tombstone look-ups of each stateful one."""
    store = RecordingStore(settings)
    by_topic: dict[str, list[bytes]] = {topic: [] for topic in settings.topics}
    for m in published:
        by_topic[m.topic].append(m.value)
    by_topic[settings.topic_events].append(b"\xc3\x01not avro")          # undecodable: a dead letter
    by_topic[settings.topic_events].append(by_topic[settings.topic_events][0])  # a duplicate delivery
    by_topic[settings.topic_joins].append(b"garbage")
    received_ms = int(time.time() * 1000)
    order = ("events", "sessions", "joins", "components", "deadletters")  # dead letters last: all of them exist
    for name in order:
        processor = WORKERS[name](settings)
        group = f"{settings.topic_prefix}.{name}"
        if name == "deadletters":
            by_topic[processor.topic].append(b"\x00undecodable dead letter")
        values = by_topic[processor.topic]
        if processor.stateful:
            processor.assign(0, Restored(None, ()))
        batch = Batch()
        for offset, value in enumerate(values):
            message = Message(processor.topic, 0, offset, received_ms, value)
            for partition, keys in processor.prepare([message]).items():
                processor.recall(partition, keys, [])  # one pass: the machine still holds every tombstone
            outcome = processor.handle(message)
            batch.add(message, outcome, 0.0)
            if name != "deadletters":
                by_topic[settings.topic_deadletter] += [DEAD_LETTER.encode(d) for d in batch.dead_letters]
                batch.dead_letters.clear()
            if batch.records == FLUSH_EVERY or offset == len(values) - 1:
                _flush(store, processor, group, batch)
                batch = Batch()
        if processor.stateful:
            tuple(store.load_state(group, processor.topic, 0))  # its states are read when they are iterated
            keys = [key for call in store.calls if call.query.startswith("INSERT INTO consumer_state")
                    for (g, _, _, key, _, _, deleted) in call.params if g == group and deleted]
            if name == "sessions":  # the joins worker never looks tombstones up (NoLookups)
                assert keys, "the workload evicts no session: the tombstone look-up would read nothing"
                store.load_tombstones(group, processor.topic, {0: keys}, {0: 0})
            # then a compaction as Worker.compact does it (snapshot, floor in the checkpoint, ALTER … DELETE), and
            # a restore and look-up above the new floor
            store.all_tombstones(group, processor.topic, 0, 0)  # recorded; what it finds on a server, known here:
            latest = {key: (state, deleted) for call in store.calls
                      if call.query.startswith("INSERT INTO consumer_state")
                      for (g, _, _, key, state, _, deleted) in call.params if g == group and key}
            kept = [(key, state) for key, (state, deleted) in latest.items()
                    if deleted and state]
            floor = len(values) - 1
            store.compact(group, processor.topic, 0, processor.snapshot(0), kept,
                          Checkpoint(processor.watermark(0), len(values), floor))
            tuple(store.load_state(group, processor.topic, 0))
            if name == "sessions":
                store.load_tombstones(group, processor.topic, {0: keys}, {0: floor})
                # the fall-back on the output table for tombstones compaction dropped; one key alone too (a tuple
                # IN one tuple must not be read as a tuple of scalars)
                store.seen_at_or_below(processor.history, {0: keys, 1: keys[:1]}, {0: floor, 1: floor})
    return store.calls


def _flush(store: ClickHouseStore, processor: Any, group: str, batch: Batch) -> None:
    """``Worker.flush`` without the retries and metrics: rows, then state and checkpoints in one block."""
    rows = batch.rows()
    if rows:
        store.insert(processor.table, processor.columns, rows)
    if processor.stateful:
        checkpoints = {p: Checkpoint(processor.watermark(p), n) for p, n in batch.next_offset.items()}
        changes = [(p, key, *value) for (p, key), value in batch.states.items()]
        store.write_state(group, processor.topic, changes, {p: c.encode() for p, c in checkpoints.items()},
                          {p: c.next_offset for p, c in checkpoints.items()})


# --- replaying the calls on a ClickHouse without the native protocol (chdb) ------------------------------------

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0", "\b": "\\b", "\f": "\\f"}


def literal(value: Any) -> str:
    """A Python value as a ClickHouse SQL literal (the types the workers' rows and queries hold)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return "'" + "".join(f"\\x{b:02x}" for b in value) + "'"
    if isinstance(value, str):
        return "'" + "".join(_ESCAPES.get(c, c) for c in value) + "'"
    if isinstance(value, list):
        return "[" + ", ".join(map(literal, value)) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(literal, value)) + ")"
    raise TypeError(f"no literal for {type(value).__name__}: a worker sends a type this replay does not know")


def sql_text(call: Call) -> str:
    """The call as one SQL text: rows of an INSERT as VALUES, parameters substituted as clickhouse-driver does
    client-side. The kwargs are the driver's own (``types_check``, and ``insert_block_size``/``strings_as_bytes``,
    which are client settings, not server ones), so they have nothing to say to a server."""
    if call.query.rstrip().upper().endswith("VALUES"):
        return call.query + " " + ", ".join(literal(tuple(row)) for row in call.params)
    if call.params:
        return call.query % {name: literal(value) for name, value in call.params.items()}
    return call.query
