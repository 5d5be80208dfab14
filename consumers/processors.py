"""What each worker does with one Kafka record — decode, check, apply — as plain code without I/O.

A processor turns a ``Message`` into an ``Outcome``: rows for its ClickHouse table, at most one dead letter, and
(for the stateful workers) the state changes to persist. It never talks to Kafka or ClickHouse; the worker loop
(``consumers/worker.py``) does that. Which worker dead-letters what, so that each bad record lands in the
dead-letter topic exactly once:

* ``events`` (topic PREFIX.events) dead-letters undecodable and rule-breaking events;
* ``sessions`` reads the same topic and skips those records (counted as ``invalid`` in its metrics);
* ``joins`` (PREFIX.joins) dead-letters undecodable and rule-breaking join records;
* ``deadletters`` writes every dead letter to ``dead_letters``; a dead letter that does not decode itself is
  written as a row with that reason (never sent back to the topic, which would loop).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Protocol

from eventpipe.codec import DEAD_LETTER, EVENT, JOIN_RECORD, DecodeError
from eventpipe.settings import Settings

from . import rules
from .joins import JoinConfig, JoinRecord, JoinWindows
from .keys import split_key
from .sessions import SessionConfig, SessionEvent, SessionPairer
from .state import History, Restored

MAX_DATETIME = 2**32 - 1  # ClickHouse DateTime is UInt32 seconds


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record as the processors see it (kafka_io builds these)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None


@dataclass(frozen=True, slots=True)
class StateChange:
    key: str
    state: bytes | None  # None: evicted
    tombstone: bytes | None = None  # what an evicted key leaves behind for a later recall (sessions only)


@dataclass(slots=True)
class Outcome:
    """``outcome`` labels the records metric; ``rows`` are ``(identity or None, row)`` — a batch keeps only the
    last row of an identity (stateful workers), rows without one are all kept."""

    outcome: str
    rows: list[tuple[str | None, tuple]] = field(default_factory=list)
    dead_letter: dict[str, Any] | None = None
    changes: list[StateChange] = field(default_factory=list)


class Processor(Protocol):
    worker: str
    topic: str
    table: str
    columns: tuple[str, ...]
    stateful: bool
    history: History | None  # set: compaction may drop tombstones that ``forgettable`` allows

    def handle(self, message: Message) -> Outcome: ...
    def prepare(self, messages: list[Message]) -> dict[int, list[str]]: ...
    def recall(self, partition: int, keys: list[str], tombstones: list[bytes],
               forgotten: Iterable[str] = ()) -> None: ...
    def persisted(self) -> None: ...
    def ready(self, partition: int) -> bool: ...
    def assign(self, partition: int, restored: Restored) -> None: ...
    def revoke(self, partition: int) -> None: ...
    def watermark(self, partition: int) -> int: ...
    def open_keys(self) -> int: ...
    # stateful processors only (the worker compacts their state):
    def snapshot(self, partition: int) -> Iterator[tuple[str, bytes]]: ...
    def forgettable(self, partition: int, tombstone: bytes) -> bool: ...


def ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (exact, no float rounding)."""
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def seconds(value_ms: int) -> int:
    """A DateTime column's value for milliseconds since the epoch (clamped to DateTime's range)."""
    return min(max(value_ms // 1000, 0), MAX_DATETIME)


def dead_letter(message: Message, reason: str, account_id: str | None = None) -> dict[str, Any]:
    """The DEAD_LETTER record for a rejected Kafka record. ``received_at`` is the record's Kafka timestamp,
    so a replay produces the identical dead letter (and the sink keeps one row)."""
    return {
        "received_at": datetime.fromtimestamp(message.timestamp_ms / 1000, tz=timezone.utc),
        "source": "kafka", "topic": message.topic, "partition": message.partition, "offset": message.offset,
        "account_id": account_id, "reason": reason,
        "payload": base64.b64encode(message.value or b"").decode("ascii"),
    }


class NoLookups:
    """Mixin of the workers whose records never need state looked up in ClickHouse before they are handled."""

    history: History | None = None

    def prepare(self, messages: list[Message]) -> dict[int, list[str]]:
        """Keys per partition whose tombstones must be looked up before ``messages`` are handled: none."""
        return {}

    def recall(self, partition: int, keys: list[str], tombstones: list[bytes],
               forgotten: Iterable[str] = ()) -> None:
        pass

    def forgettable(self, partition: int, tombstone: bytes) -> bool:
        """Whether compaction may drop ``tombstone`` (only with a ``history`` to answer look-ups instead)."""
        return False

    def persisted(self) -> None:
        pass


class NoState(NoLookups):
    """Mixin of the stateless workers."""

    stateful = False

    def ready(self, partition: int) -> bool:
        return True

    def assign(self, partition: int, restored: Restored) -> None:
        pass

    def revoke(self, partition: int) -> None:
        pass

    def watermark(self, partition: int) -> int:
        return 0

    def open_keys(self) -> int:
        return 0


class EventsSink(NoState):
    """PREFIX.events → ``events``: one row per event; the table de-duplicates by ``(account_id, event_id)``."""

    worker = "events"
    table = "events"
    columns = ("account_id", "event_id", "action", "type", "event_time", "session", "entities.key",
               "entities.value", "received_at", "received_at_ms", "source", "kafka_partition", "kafka_offset",
               "row_version")

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_events
        self.types = rules.load_event_types(settings.event_types_file)
        self.max_future_s = settings.max_future_s

    def handle(self, message: Message) -> Outcome:
        try:
            event = EVENT.decode(message.value or b"")
        except DecodeError as exc:  # invalid input: dead letter, move on
            return Outcome("dead_letter", dead_letter=dead_letter(message, exc.reason))
        reason = rules.check_event(event, self.types, self.max_future_s)
        if reason is not None:
            return Outcome("dead_letter", dead_letter=dead_letter(message, reason, event["account_id"]))
        received_ms = ms(event["received_at"])
        row = (event["account_id"], event["event_id"], event["action"], event["type"],
               min(event["timestamp"], MAX_DATETIME), event["session"],
               [e["key"] for e in event["entities"]], [e["text"] for e in event["entities"]],
               seconds(received_ms), received_ms, event["source"], message.partition, message.offset,
               message.offset)
        return Outcome("written", rows=[(None, row)])


class DeadLetterSink(NoState):
    """PREFIX.deadletter → ``dead_letters``; ``dedup_key`` hashes every field so a re-sent letter counts once."""

    worker = "deadletters"
    table = "dead_letters"
    columns = ("received_at", "received_at_ms", "source", "topic", "partition", "offset", "account_id", "reason",
               "payload", "dedup_key")

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_deadletter

    def handle(self, message: Message) -> Outcome:
        try:
            letter = DEAD_LETTER.decode(message.value or b"")
            outcome = "written"
        except DecodeError as exc:  # invalid input: keep it as a row of its own, never re-send it (loop)
            letter = dead_letter(message, f"dead letter does not decode: {exc.reason}")
            outcome = "undecodable"
        received_ms = ms(letter["received_at"])
        fields = (received_ms, letter["source"], letter["topic"], letter["partition"], letter["offset"],
                  letter["account_id"], letter["reason"], letter["payload"])
        key = hashlib.sha1(json.dumps(fields).encode()).hexdigest()
        return Outcome(outcome, rows=[(None, (seconds(received_ms),) + fields + (key,))])


class Stateful(NoLookups):
    """Shared part of the sessions and joins workers: one machine per assigned partition."""

    stateful = True

    def __init__(self) -> None:
        self.machines: dict[int, Any] = {}

    def new_machine(self, watermark: int, states: Iterable[bytes]) -> Any:
        """The partition's machine, restored from ``states`` (read once, as they come)."""
        raise NotImplementedError

    def assign(self, partition: int, restored: Restored) -> None:
        watermark = restored.checkpoint.watermark if restored.checkpoint else 0
        # A restore makes millions of objects and no garbage. The collections it would trigger as the heap grows
        # are skipped, and what it made is then frozen (as the start-up objects are, __main__.memory_policy): the
        # young collections after it would each pass over all of it again — 2.4 s of a 1 M-window joins restore
        # in six partitions. The garbage collected first is what freezing would otherwise keep for good.
        enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            self.machines[partition] = self.new_machine(watermark, iter(restored))
        finally:
            if enabled:
                gc.enable()
        gc.freeze()

    def ready(self, partition: int) -> bool:
        return partition in self.machines

    def revoke(self, partition: int) -> None:
        self.machines.pop(partition, None)

    def watermark(self, partition: int) -> int:
        return self.machines[partition].watermark

    def open_keys(self) -> int:
        return sum(len(m) for m in self.machines.values())

    def snapshot(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """Every live state of a partition's machine, as persisted (for compacting ``consumer_state``)."""
        return self.machines[partition].snapshot()

    def apply(self, message: Message, item: Any, to_row: Any) -> Outcome:
        machine = self.machines[message.partition]
        late = machine.dropped_late
        changes = machine.process(item, message.offset)
        # dropped_late: too late for pairing, in `events` only (see sessions.py/joins.py) — but the deadlines its
        # time passed (an ignored late END can move the watermark) still give rows and state
        outcome = "dropped_late" if machine.dropped_late != late else "applied" if changes else "no_change"
        return Outcome(
            outcome,
            rows=[to_row(c.row) for c in changes if c.row is not None],
            changes=[StateChange(c.key, c.state, c.tombstone) for c in changes])


def session_identity(key: str) -> tuple[str, str, str]:
    """The ``sessions`` sorting key (account_id, type, session) of a ``state_key``."""
    account_id, session, type_ = split_key(key)
    return account_id, type_, session


class SessionsWorker(Stateful):
    """PREFIX.events → ``sessions`` through ``SessionPairer`` (SPEC §3.1)."""

    worker = "sessions"
    table = "sessions"
    columns = ("account_id", "type", "session", "status", "start_time", "end_time", "duration_s", "update_count",
               "row_version")
    # every evicted session had a row (visible by then: SessionPairer's retention outlasts the orphan grace)
    history = History(table, ("account_id", "type", "session"), "row_version", session_identity)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.topic = settings.topic_events
        self.types = rules.load_event_types(settings.event_types_file)
        self.max_future_s = settings.max_future_s
        self.config = SessionConfig(session_timeout_s=settings.session_timeout_s,
                                    orphan_grace_s=settings.orphan_grace_s,
                                    late_horizon_s=settings.session_late_horizon_s)
        self.decoded: dict[tuple[int, int], SessionEvent | Outcome] = {}  # prepare() -> handle(), one poll

    def new_machine(self, watermark: int, states: Iterable[bytes]) -> SessionPairer:
        return SessionPairer(self.config, watermark, states)

    def prepare(self, messages: list[Message]) -> dict[int, list[str]]:
        """Decode ``messages`` (kept for ``handle``) and list, per partition, the keys whose tombstones must be
        looked up first: UPDATE/END of sessions that are not in memory (see the recall protocol in sessions.py)."""
        self.decoded = {(m.partition, m.offset): self.decode(m) for m in messages}
        by_partition: dict[int, list[SessionEvent]] = {}
        for (partition, _), item in self.decoded.items():
            if isinstance(item, SessionEvent) and partition in self.machines:
                by_partition.setdefault(partition, []).append(item)
        lookups = {p: self.machines[p].unknown_keys(items) for p, items in by_partition.items()}
        return {p: keys for p, keys in lookups.items() if keys}

    def recall(self, partition: int, keys: list[str], tombstones: list[bytes],
               forgotten: Iterable[str] = ()) -> None:
        self.machines[partition].recall(keys, tombstones, forgotten)

    def forgettable(self, partition: int, tombstone: bytes) -> bool:
        return self.machines[partition].forgettable(tombstone)

    def persisted(self) -> None:
        for machine in self.machines.values():
            machine.persisted()

    def decode(self, message: Message) -> SessionEvent | Outcome:
        try:
            event = EVENT.decode(message.value or b"")
        except DecodeError:  # invalid input: the events worker dead-letters it
            return Outcome("invalid")
        if rules.check_event(event, self.types, self.max_future_s) is not None:
            return Outcome("invalid")  # ditto
        if event["session"] is None:
            return Outcome("single_event")  # in `events` only (SPEC §3.1)
        # positional: a frozen dataclass takes keyword arguments at about twice the cost, once per record;
        # the timestamp clamped as the events table has it (the pairer holds uint32 times)
        return SessionEvent(event["account_id"], event["event_id"], event["action"], event["type"],
                            min(event["timestamp"], MAX_DATETIME), event["session"])

    def handle(self, message: Message) -> Outcome:
        item = self.decoded.pop((message.partition, message.offset), None) or self.decode(message)
        return item if isinstance(item, Outcome) else self.apply(message, item, session_row)


def session_row(row: Any) -> tuple[str, tuple]:
    """``(identity, row)``: identity is the table's sorting key, so a batch keeps the last row per session."""
    identity = f"{row.account_id}\x1f{row.type}\x1f{row.session}"
    return identity, (row.account_id, row.type, row.session, row.status, row.start_time, row.end_time, row.duration_s,
            row.update_count, row.row_version)


class JoinsWorker(Stateful):
    """PREFIX.joins → ``joined_events`` through ``JoinWindows`` (SPEC §3.2)."""

    worker = "joins"
    table = "joined_events"
    columns = ("account_id", "event_id", "component_id", "type_id", "join_key", "importance", "start_time",
               "end_time", "actual_time", "start_time_ms", "end_time_ms", "actual_time_ms", "count", "message",
               "version", "records", "row_version", "category", "type_system_name", "type_display_name", "type_code",
               "properties.name", "properties.value", "properties.type")

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.topic = settings.topic_joins
        self.max_future_s = settings.max_future_s
        self.config = JoinConfig()

    def new_machine(self, watermark: int, states: Iterable[bytes]) -> JoinWindows:
        return JoinWindows(self.config, watermark, states)

    def handle(self, message: Message) -> Outcome:
        try:
            record = JOIN_RECORD.decode(message.value or b"")
        except DecodeError as exc:  # invalid input: dead letter, move on
            return Outcome("dead_letter", dead_letter=dead_letter(message, exc.reason))
        reason = rules.check_join_record(record, self.max_future_s)
        start_ms = ms(record["start_date"])
        if reason is None and not 0 <= start_ms <= MAX_DATETIME * 1000:
            reason = "start_date: outside 1970-01-01 .. 2106-02-07"
        if reason is not None:
            return Outcome("dead_letter", dead_letter=dead_letter(message, reason, record["account_id"]))
        # positional, in JoinRecord's field order: keyword arguments cost about twice as much, once per record
        item = JoinRecord(record["account_id"], record["record_id"], record["event_id"], record["component_id"],
                          record["type_id"], record["join_key"], start_ms, record["join_interval"],
                          record["importance"], record["count"], record["message"], record["version"],
                          join_extras(record))
        return self.apply(message, item, joined_row)


def join_extras(record: dict[str, Any]) -> list[Any] | None:
    """SendEvent's additions to a join record (schema v2) in JoinRecord.extras' shape; None when it has none."""
    if record["category"] is None and record["type_system_name"] is None and not record["properties"]:
        return None
    return [record["category"] or "", record["type_system_name"] or "", record["type_display_name"] or "",
            record["type_code"] or "", [[p["name"], p["value"], p["type"]] for p in record["properties"]]]


def joined_row(row: Any) -> tuple[str, tuple]:
    """``(identity, row)``: identity is the table's sorting key, so a batch keeps the last row per joined event."""
    identity = f"{row.account_id}\x1f{row.component_id}\x1f{row.type_id}\x1f{row.event_id}"
    return identity, (row.account_id, row.event_id, row.component_id, row.type_id, row.join_key, row.importance,
            seconds(row.start_time), seconds(row.end_time), seconds(row.actual_time),
            max(row.start_time, 0), max(row.end_time, 0), max(row.actual_time, 0), row.count, row.message,
            row.version, row.records, row.row_version, *extras_columns(row.extras))


def extras_columns(extras: list[Any] | None) -> tuple:
    """category, type names and code, properties.name/.value/.type (a null value as '')."""
    if extras is None:
        return "", "", "", "", [], [], []
    category, system, display, code, props = extras
    return (category, system, display, code, [p[0] for p in props], [p[1] or "" for p in props],
            [p[2] for p in props])


def components_sink(settings: Settings) -> Processor:
    from .components import ComponentsSink  # its module builds on this one, so it is imported when used

    return ComponentsSink(settings)


WORKERS = {"events": EventsSink, "sessions": SessionsWorker, "joins": JoinsWorker, "deadletters": DeadLetterSink,
           "components": components_sink}
