"""The hand-written event reader (eventpipe/codec.py) against fastavro: the same dict for every valid frame, an
error wherever fastavro has one, and the same rows from the events sink on the benchmark workload."""

import io
from datetime import timezone

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.workload import Workload, WorkloadConfig
from eventpipe.codec import EVENT, HEADER_LEN, DecodeError

LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=80)  # lengths past 63 take multi-byte varints
EVENTS = st.fixed_dictionaries({
    "account_id": TEXT, "event_id": TEXT, "action": st.sampled_from(["START", "UPDATE", "END"]), "type": TEXT,
    "timestamp": LONG, "session": st.none() | TEXT,
    "entities": st.lists(st.fixed_dictionaries({"key": TEXT, "value": TEXT}), max_size=40),
    # timestamp-millis within what datetime holds (fastavro cannot read the rest either)
    "received_at": st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999),
    "source": st.sampled_from(["http", "kafka"]),
})


def fastavro_decode(frame: bytes) -> dict:
    """What EVENT.decode gave before it had its own reader: fastavro's schemaless reader, all bytes consumed."""
    body = io.BytesIO(frame[HEADER_LEN:])
    record = fastavro.schemaless_reader(body, EVENT.schema, None)
    if body.tell() != len(frame) - HEADER_LEN:
        raise ValueError("trailing bytes")
    return record


def test_the_current_event_schema_has_the_hand_written_reader() -> None:
    # if event.avsc changes, its fingerprint does and fastavro reads it (correct, slower): write a reader for it
    assert EVENT.fingerprint in EVENT.readers


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_round_trip_equals_fastavro(record: dict) -> None:
    frame = EVENT.encode(record)
    decoded = EVENT.decode(frame)
    assert decoded == fastavro_decode(frame)
    assert decoded["received_at"].tzinfo is timezone.utc


def test_multi_block_arrays_with_byte_sizes() -> None:
    """Writers may split an array into blocks and give a block's size in bytes (negative count): fastavro does
    not write them, Avro's other implementations may."""
    record = {"account_id": "a", "event_id": "e", "action": "UPDATE", "type": "T", "timestamp": 5, "session": None,
              "entities": [], "received_at": 1_700_000_000_000, "source": "kafka"}
    frame = EVENT.encode(record)
    # body up to the entities: account, event_id, action, type, timestamp, union branch — then the array
    head = frame[:HEADER_LEN] + bytes([2]) + b"a" + bytes([2]) + b"e" + bytes([2, 2]) + b"T" + bytes([10, 0])
    assert frame.startswith(head)
    tail = frame[len(head) + 1:]  # after the array's terminating 0
    entity = bytes([2]) + b"k" + bytes([4]) + b'"v'
    # a block of count -2 with its size (2 entities, zig-zag), then a block of count 1, then the end
    blocks = bytes([3, 2 * len(entity * 2)]) + entity * 2 + bytes([2]) + entity + b"\x00"
    frame2 = head + blocks + tail
    assert EVENT.decode(frame2) == fastavro_decode(frame2)
    assert [e["value"] for e in EVENT.decode(frame2)["entities"]] == ['"v'] * 3


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS, st.data())
def test_damaged_frames_fail_like_fastavro(record: dict, data: st.DataObject) -> None:
    """A truncated, extended or bit-flipped frame: what fastavro refuses, ours refuses; what ours reads, it reads
    as fastavro does. (Ours may refuse more: fastavro reads a negative enum index as a symbol from the end.)"""
    frame = bytearray(EVENT.encode(record))
    damage = data.draw(st.sampled_from(["truncate", "extend", "flip"]))
    if damage == "truncate":
        frame = frame[:data.draw(st.integers(HEADER_LEN, len(frame) - 1))]
    elif damage == "extend":
        frame += data.draw(st.binary(min_size=1, max_size=4))
    else:
        i = data.draw(st.integers(HEADER_LEN, len(frame) - 1))
        frame[i] ^= 1 << data.draw(st.integers(0, 7))
    frame = bytes(frame)
    try:
        expected = fastavro_decode(frame)
    except Exception:  # invalid input for fastavro: ours must refuse it too
        with pytest.raises(DecodeError):
            EVENT.decode(frame)
        return
    try:
        decoded = EVENT.decode(frame)
    except DecodeError:  # invalid input that fastavro let through (see test_negative_enum_index_is_refused)
        return
    assert decoded == expected


def test_negative_enum_index_is_refused() -> None:
    record = {"account_id": "a", "event_id": "e", "action": "START", "type": "T", "timestamp": 5, "session": None,
              "entities": [], "received_at": 0, "source": "http"}
    frame = bytearray(EVENT.encode(record))
    frame[HEADER_LEN + 4] = 1  # the action: zig-zag -1
    assert fastavro_decode(bytes(frame))["action"] == "END"  # fastavro: symbols[-1]
    with pytest.raises(DecodeError, match="action: enum index"):
        EVENT.decode(bytes(frame))


@pytest.mark.parametrize("body, reason", [
    (b"", "does not decode"),
    (b"\x02a\x02e\x06", "does not decode"),  # action index 3
    (b"\x02a\x02e\x00\x02T\x00\x04", "does not decode"),  # union branch 2
    (b"\x02a\x02e\x00\x02T\x00\x00\x00\x00\x00\x00", "trailing bytes"),
    (b"\x03a", "does not decode"),  # negative length
    (b"\xff" * 11, "does not decode"),  # varint longer than 10 bytes
])
def test_bad_bodies_are_decode_errors(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        EVENT.decode(EVENT.header + body)


@pytest.mark.parametrize("worker", ["events", "sessions"])
def test_the_workload_gives_the_same_outcomes_as_with_fastavro(worker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers.processors import WORKERS, Message
    from consumers.state import Restored
    from eventpipe.settings import Settings

    workload = Workload(WorkloadConfig())
    frames = [EVENT.encode(r) for _, r in workload.event_records(workload.events(3000))]
    messages = [Message("t", 0, i, 1_763_900_000_000, f) for i, f in enumerate(frames)]

    def outcomes() -> list:
        processor = WORKERS[worker](Settings())
        processor.assign(0, Restored(checkpoint=None, states=()))
        for partition, keys in processor.prepare(messages).items():
            processor.recall(partition, keys, [])
        return [processor.handle(m) for m in messages]

    fast = outcomes()
    monkeypatch.delitem(EVENT.readers, EVENT.fingerprint)  # fastavro reads it again
    slow = outcomes()
    assert fast == slow
    assert sum(1 for o in fast if o.rows) > len(frames) // 2
