"""Processors are pure and idempotent: the same message gives the same outcome (snuba's rule as a test)."""

from __future__ import annotations

import base64
import datetime as dt

from consumers.batch import Batch
from consumers.processors import DeadLetterSink, EventsSink, JoinsWorker, Message, SessionsWorker, dead_letter, ms
from consumers.state import Checkpoint, Restored
from eventpipe.codec import DEAD_LETTER, JOIN_RECORD
from eventpipe.settings import Settings

from .fakes import event_bytes

SETTINGS = Settings.from_env({}, topic_prefix="t")
UTC = dt.timezone.utc
GUID = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"


def msg(value: bytes, offset: int = 0, partition: int = 0, topic: str = "t.events") -> Message:
    return Message(topic, partition, offset, 1_700_000_000_123, value)


def join_bytes(start_ms: int, count: int = 1, record_id: str = "r1", event_id: str | None = GUID) -> bytes:
    return JOIN_RECORD.encode({
        "account_id": "acc", "record_id": record_id, "event_id": event_id, "component_id": GUID, "type_id": GUID,
        "join_key": 45648117245, "start_date": dt.datetime.fromtimestamp(start_ms / 1000, UTC),
        "join_interval": 600.0, "importance": "Alarm", "count": count, "message": "Event message",
        "version": "1.0.0.0", "received_at": dt.datetime(2026, 1, 1, tzinfo=UTC), "source": "kafka"})


def test_events_sink_row_of_the_seed_event_and_idempotency() -> None:
    sink = EventsSink(SETTINGS)
    message = msg(event_bytes("START", 1365772427, event_id="e1"), offset=7)
    first, again = sink.handle(message), sink.handle(message)
    assert first == again
    (identity, row), = first.rows
    assert identity is None
    assert row[:8] == ("acc", "e1", "START", "APPSTART", 1365772427, "8nc92io9q", ["app"], ["BigBrother"])
    assert row[-3:] == (0, 7, 7)


def test_undecodable_bytes_become_a_dead_letter_with_base64_payload() -> None:
    outcome = EventsSink(SETTINGS).handle(msg(b"\x00junk", offset=3, partition=2))
    letter = outcome.dead_letter
    assert outcome.outcome == "dead_letter" and outcome.rows == []
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("t.events", 2, 3)
    assert base64.b64decode(letter["payload"]) == b"\x00junk"
    assert "single-object" in letter["reason"]
    assert DEAD_LETTER.decode(DEAD_LETTER.encode(letter))["reason"] == letter["reason"]


def test_unknown_fingerprint_is_named_in_the_reason() -> None:
    frame = b"\xc3\x01" + b"\x01" * 8 + b"\x00"
    assert "unknown event schema fingerprint" in EventsSink(SETTINGS).handle(msg(frame)).dead_letter["reason"]


def test_sessions_skip_what_the_events_sink_dead_letters_and_sessionless_events() -> None:
    worker = SessionsWorker(SETTINGS)
    worker.assign(0, Restored(None, ()))
    assert worker.handle(msg(b"junk")).outcome == "invalid"
    assert worker.handle(msg(event_bytes("END", 1, session=None))).outcome == "invalid"
    assert worker.handle(msg(event_bytes("UPDATE", 1365772427, session=None))).outcome == "single_event"


def test_sessions_seed_pair_closes_with_duration_106_and_state_restores() -> None:
    worker = SessionsWorker(SETTINGS)
    worker.assign(0, Restored(None, ()))
    start = worker.handle(msg(event_bytes("START", 1365772427, event_id="s"), offset=0))
    assert start.rows[0][1][3] == "open"
    # persist and restore between the two events, as a restart would
    restored = Restored(Checkpoint(worker.watermark(0), 1), tuple(c.state for c in start.changes))
    again = SessionsWorker(SETTINGS)
    again.assign(0, restored)
    assert again.handle(msg(event_bytes("START", 1365772427, event_id="s"), offset=0)).rows == []  # replay: no-op
    end = again.handle(msg(event_bytes("END", 1365772533, event_id="e"), offset=1))
    assert end.rows[0][1] == ("acc", "APPSTART", "8nc92io9q", "closed", 1365772427, 1365772533, 106, 0, 1)


def test_joins_seed_record_and_extension_sum_their_counts() -> None:
    worker = JoinsWorker(SETTINGS)
    worker.assign(0, Restored(None, ()))
    t0 = ms(dt.datetime(2016, 4, 30, 23, 25, 43, 511000, tzinfo=UTC))
    first = worker.handle(msg(join_bytes(t0), offset=0, topic="t.joins"))
    second = worker.handle(msg(join_bytes(t0 + 60_000, count=4, record_id="r2"), offset=1, topic="t.joins"))
    assert first.rows[0][0] == second.rows[0][0]  # same joined event
    row = second.rows[0][1]
    assert (row[1], row[12], row[15], row[16]) == (GUID, 5, 2, 1)
    assert (row[9], row[10]) == (t0, t0 + 60_000)


def test_a_rule_breaking_join_record_is_dead_lettered() -> None:
    worker = JoinsWorker(SETTINGS)
    worker.assign(0, Restored(None, ()))
    outcome = worker.handle(msg(join_bytes(-5_000), topic="t.joins"))
    assert outcome.outcome == "dead_letter" and outcome.dead_letter["reason"].startswith("start_date")


def test_dead_letter_sink_gives_identical_letters_the_same_dedup_key() -> None:
    sink = DeadLetterSink(SETTINGS)
    letter = DEAD_LETTER.encode(dead_letter(msg(b"junk", offset=4), "why"))
    a, b = sink.handle(msg(letter, offset=10)), sink.handle(msg(letter, offset=11))
    assert a.rows == b.rows and a.rows[0][1][-1]
    broken = sink.handle(msg(b"junk", offset=12, topic="t.deadletter"))
    assert broken.outcome == "undecodable" and broken.rows[0][1][7].startswith("dead letter does not decode")


def test_batch_keeps_the_last_row_per_identity_and_offsets() -> None:
    worker = SessionsWorker(SETTINGS)
    worker.assign(0, Restored(None, ()))
    batch = Batch()
    for offset, (action, ts) in enumerate([("START", 1365772427), ("END", 1365772533)]):
        message = msg(event_bytes(action, ts, event_id=action), offset=offset + 10)
        batch.add(message, worker.handle(message), now=0.0)
    assert [row[3] for row in batch.rows()] == ["closed"]
    assert batch.first_offset == {0: 10} and batch.next_offset == {0: 12}
    assert batch.is_due(0.5, 100, 1.0) is False and batch.is_due(1.0, 100, 1.0) is True
    assert batch.is_due(0.0, 2, 1.0) is True


def test_sessions_clamp_a_timestamp_beyond_2106_as_the_events_table_does() -> None:
    # the pairer holds uint32 times; a time rules.check_event lets through (received_at as far off) is clamped
    settings = Settings.from_env({}, topic_prefix="t", max_future_s=10**11)
    worker = SessionsWorker(settings)
    worker.assign(0, Restored(None, ()))
    out = worker.handle(msg(event_bytes("START", 2**32 + 1000, event_id="s"), offset=0))
    assert out.rows[0][1][3:5] == ("open", 2**32 - 1) and worker.watermark(0) == 2**32 - 1
    assert EventsSink(settings).handle(msg(event_bytes("START", 2**32 + 1000))).rows[0][1][4] == 2**32 - 1


def test_an_event_older_than_the_retention_is_counted_as_dropped_late() -> None:
    settings = Settings.from_env({}, topic_prefix="t", session_timeout_s=100, orphan_grace_s=10)
    worker = SessionsWorker(settings)
    worker.assign(0, Restored(None, ()))
    worker.handle(msg(event_bytes("START", 1365772427, session="sessionAA", event_id="a"), offset=0))
    worker.handle(msg(event_bytes("START", 1365772427 + 1000, session="sessionBB", event_id="b"), offset=1))
    late = worker.handle(msg(event_bytes("UPDATE", 1365772427, session="sessionCC", event_id="c"), offset=2))
    assert late.outcome == "dropped_late" and late.rows == [] and late.changes == []


def test_dead_letter_reasons_become_bounded_metric_labels() -> None:
    from consumers.metrics import reason_label

    assert reason_label("type: 'X' is not one of the configured types") == "type"
    assert reason_label("unknown event schema fingerprint 0101010101010101") == \
        "unknown event schema fingerprint <fingerprint>"
    assert reason_label("event body does not decode: EOFError: x") == "event body does not decode"


def test_a_restore_runs_without_the_cyclic_collector_leaves_it_as_it_was_and_freezes_what_it_made() -> None:
    import gc

    seen: list[bool] = []

    class Probe(JoinsWorker):
        def new_machine(self, watermark: int, states: tuple[bytes, ...]):  # type: ignore[no-untyped-def]
            seen.append(gc.isenabled())
            return super().new_machine(watermark, states)

    worker = Probe(Settings.from_env({}))
    was = gc.isenabled()
    try:
        gc.enable()
        worker.assign(0, Restored(None, ()))
        assert gc.isenabled()
        gc.disable()
        worker.assign(1, Restored(Checkpoint(5, 0), ()))
        assert not gc.isenabled()
        machine = worker.machines[1]
        assert gc.is_tracked(machine) and not any(o is machine for o in gc.get_objects())  # frozen
    finally:
        (gc.enable if was else gc.disable)()
        gc.unfreeze()
    assert seen == [False, False] and worker.watermark(1) == 5
