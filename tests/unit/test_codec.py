import json
from pathlib import Path

import pytest

from eventpipe.codec import DEAD_LETTER, EVENT, JOIN_RECORD, SCHEMA_DIR, AvroType, DecodeError

SEED_EVENT = {
    "account_id": "demo", "event_id": "e1", "action": "START", "type": "APPSTART", "timestamp": 1365772427,
    "session": "8nc92io9q", "entities": [{"key": "app", "value": '"BigBrother"'}, {"key": "n", "value": "[1,{}]"}],
    "received_at": 1700000000123, "source": "http",
}


def crc64_avro(data: bytes) -> int:
    """The Avro specification's reference fingerprint algorithm, written out independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize("avro_type", [EVENT, JOIN_RECORD, DEAD_LETTER], ids=lambda t: t.name)
def test_header_is_the_single_object_encoding(avro_type: AvroType) -> None:
    from fastavro.schema import to_parsing_canonical_form

    canonical = to_parsing_canonical_form(json.loads((SCHEMA_DIR / f"{avro_type.name}.avsc").read_text()))
    assert avro_type.header == b"\xc3\x01" + crc64_avro(canonical.encode()).to_bytes(8, "little")


def test_event_round_trips() -> None:
    decoded = EVENT.decode(EVENT.encode(SEED_EVENT))
    assert {k: v for k, v in decoded.items() if k != "received_at"} == {
        k: v for k, v in SEED_EVENT.items() if k != "received_at"}
    assert int(decoded["received_at"].timestamp() * 1000) == SEED_EVENT["received_at"]


@pytest.mark.parametrize("frame, reason", [
    (b"", "not an Avro single-object frame"),
    (b"\x00\x01" + bytes(8) + b"x", "not an Avro single-object frame"),
    (b"\xc3\x01" + bytes(8), "unknown event schema fingerprint"),
])
def test_bad_frames_raise_with_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        EVENT.decode(frame)


def test_truncated_and_padded_bodies_are_rejected() -> None:
    frame = EVENT.encode(SEED_EVENT)
    with pytest.raises(DecodeError, match="does not decode"):
        EVENT.decode(frame[:-5])
    with pytest.raises(DecodeError, match="trailing bytes"):
        EVENT.decode(frame + b"\x00")


def test_other_types_frames_are_unknown_here() -> None:
    with pytest.raises(DecodeError, match="unknown"):
        EVENT.decode(DEAD_LETTER.encode({"received_at": 0, "source": "http", "reason": "r", "payload": "{}"}))


def test_old_writer_versions_resolve_against_the_current_reader(tmp_path: Path) -> None:
    current = json.loads((SCHEMA_DIR / "event.avsc").read_text())
    old = {**current, "fields": [f for f in current["fields"] if f["name"] != "session"]}
    (tmp_path / "event.avsc").write_text(json.dumps(current))
    (tmp_path / "event.v1.avsc").write_text(json.dumps(old))
    both = AvroType.load("event", tmp_path)
    old_only = AvroType.load("event.v1", tmp_path)  # a producer still on v1
    record = {k: v for k, v in SEED_EVENT.items() if k != "session"}
    decoded = both.decode(old_only.encode(record))
    assert decoded["session"] is None and decoded["event_id"] == "e1"
