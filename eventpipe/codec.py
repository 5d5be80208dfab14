"""Avro single-object encoding of eventpipe's records — the only module that knows the framing.

A frame is ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema, then the Avro
binary body (Avro specification, "Single object encoding").  Schemas live in ``schemas/avro/``: ``NAME.avsc``
is the current reader and writer; every ``NAME.vN.avsc`` published before stays there so records written
with an old schema still resolve against the current one.

Usage (the gateway, the consumers and direct producers share it)::

    from eventpipe.codec import EVENT
    frame = EVENT.encode(record_dict)
    record_dict = EVENT.decode(frame)        # raises DecodeError with a reason
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "avro"
MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8


class DecodeError(ValueError):
    """A frame that cannot be read: bad magic, unknown writer fingerprint or a body that fails decoding.

    Invalid input: the consumer sends the record to the dead-letter topic with ``reason`` and moves on.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def schema_fingerprint(schema: dict[str, Any]) -> bytes:
    """The 8 bytes of the CRC-64-AVRO fingerprint, little-endian, as they appear in a frame."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(frozen=True)
class AvroType:
    """One record type: its current schema (reader and writer) and every older writer schema."""

    name: str
    schema: Any  # parsed by fastavro
    header: bytes
    writers: dict[bytes, Any]  # fingerprint -> parsed writer schema (current included)
    # fingerprint -> a hand-written reader of that writer schema's body, resolved to the current schema (the same
    # dict fastavro gives; faster); writers without one are read by fastavro
    readers: dict[bytes, Callable[[bytes], tuple[int, dict[str, Any]]]] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str, schema_dir: Path = SCHEMA_DIR) -> "AvroType":
        """Parse ``NAME.avsc`` and every ``NAME.v*.avsc``. Blocks on file reads; raises on a broken schema file."""
        current = json.loads((schema_dir / f"{name}.avsc").read_text())
        writers = {}
        for path in sorted(schema_dir.glob(f"{name}.v*.avsc")):
            old = json.loads(path.read_text())
            writers[schema_fingerprint(old)] = fastavro.parse_schema(old)
        parsed = fastavro.parse_schema(current)
        fp = schema_fingerprint(current)
        writers[fp] = parsed
        readers = {f: r for f, r in BODY_READERS.get(name, {}).items() if f in writers}
        return cls(name=name, schema=parsed, header=MAGIC + fp, writers=writers, readers=readers)

    @property
    def fingerprint(self) -> bytes:
        return self.header[len(MAGIC):]

    def encode(self, record: dict[str, Any]) -> bytes:
        """Frame one record with the current schema. Raises ValueError/TypeError if it does not fit (a bug)."""
        buf = io.BytesIO()
        buf.write(self.header)
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, frame: bytes) -> dict[str, Any]:
        """Read one frame written with any known version of this type, resolved to the current schema."""
        if len(frame) < HEADER_LEN or frame[:2] != MAGIC:
            raise DecodeError(f"not an Avro single-object frame (expected C3 01 then an 8-byte fingerprint)")
        fp = frame[2:HEADER_LEN]
        writer = self.writers.get(fp)
        if writer is None:
            raise DecodeError(f"unknown {self.name} schema fingerprint {fp.hex()}")
        reader = self.readers.get(fp)
        if reader is not None and writer is self.schema:
            try:
                end, record = reader(frame)
            except _Malformed as exc:  # invalid input, as below
                raise DecodeError(f"{self.name} body does not decode: {exc}") from None
            except (IndexError, ValueError, OverflowError) as exc:  # invalid input: truncated, bad UTF-8, range
                raise DecodeError(f"{self.name} body does not decode: {type(exc).__name__}: {exc}") from None
            if end != len(frame):
                raise DecodeError(f"{self.name} body has {len(frame) - end} trailing bytes")
            return record
        body = io.BytesIO(frame[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(body, writer, None if writer is self.schema else self.schema)
        except Exception as exc:  # invalid input: fastavro raises many types for truncated/garbled bodies
            raise DecodeError(f"{self.name} body does not decode: {type(exc).__name__}: {exc}") from None
        if body.tell() != len(frame) - HEADER_LEN:
            raise DecodeError(f"{self.name} body has {len(frame) - HEADER_LEN - body.tell()} trailing bytes")
        return record


# --- a hand-written reader of the event schema ----------------------------------------------------------------
# fastavro's schemaless_reader costs ~9 µs per 166-byte event (a Python-level read() per byte of every varint);
# the events and sessions workers decode every record. This reader walks the bytes of the one writer schema it
# was written for (registered under that schema's fingerprint, so a changed event.avsc falls back to fastavro)
# and returns fastavro's dict; tests/unit/test_codec_reader.py holds it to fastavro's output and errors.

class _Malformed(ValueError):
    """Invalid input: a body the hand-written reader refuses (bad varint, length, union branch or enum index)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ACTIONS = ("START", "UPDATE", "END")
_SOURCES = ("http", "kafka")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint of at most 10 bytes (an Avro long) at ``pos``: ``(value, next position)``."""
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise _Malformed("varint longer than 10 bytes")
    if n >> 64:
        raise _Malformed("varint outside the 64-bit range")
    return (n >> 1) ^ -(n & 1), pos


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    b = buf[pos]
    if b < 0x80:
        n, pos = b >> 1, pos + 1
        if b & 1:
            raise _Malformed("negative string length")
    else:
        n, pos = _varint(buf, pos)
        if n < 0:
            raise _Malformed("negative string length")
    end = pos + n
    if end > len(buf):
        raise _Malformed("string past the end of the body")
    return buf[pos:end].decode("utf-8"), end


def _read_event_v1(frame: bytes) -> tuple[int, dict[str, Any]]:
    """The body of an event frame written with schemas/avro/event.avsc (fingerprint f7fc16b89047a5b6), and the
    position where it ended. Single-byte varints (lengths < 64, small enum and union indexes) are read inline:
    they are nearly all of them."""
    size = len(frame)
    pos = HEADER_LEN
    account_id, pos = _string(frame, pos)
    event_id, pos = _string(frame, pos)
    action = frame[pos]
    pos += 1
    if action not in (0, 2, 4):  # zig-zag 0, 1, 2
        raise _Malformed(f"action: enum index {action}")
    type_, pos = _string(frame, pos)
    timestamp, pos = _varint(frame, pos)
    branch = frame[pos]
    if branch == 2:  # zig-zag 1: the string
        session, pos = _string(frame, pos + 1)
    elif branch == 0:
        session, pos = None, pos + 1
    else:
        raise _Malformed(f"session: union branch byte {branch}")
    strings: list[str] = []
    append = strings.append
    while True:
        count = frame[pos]
        if count < 0x80 and not count & 1:
            count >>= 1
            pos += 1
        else:
            count, pos = _varint(frame, pos)
        if count == 0:
            break
        if count < 0:  # a block that states its size in bytes too
            count = -count
            _, pos = _varint(frame, pos)
        for _ in range(2 * count):  # each entity's key, then its value
            b = frame[pos]
            end = pos + 1 + (b >> 1)
            if b < 0x80 and not b & 1 and end <= size:
                append(frame[pos + 1:end].decode("utf-8"))
                pos = end
            else:
                text, pos = _string(frame, pos)
                append(text)
    pairs = iter(strings)
    entities = [{"key": key, "value": value} for key, value in zip(pairs, pairs)]
    received_at, pos = _varint(frame, pos)
    source = frame[pos]
    if source not in (0, 2):
        raise _Malformed(f"source: enum index byte {source}")
    return pos + 1, {"account_id": account_id, "event_id": event_id, "action": _ACTIONS[action >> 1],
                     "type": type_, "timestamp": timestamp, "session": session, "entities": entities,
                     "received_at": _EPOCH + timedelta(milliseconds=received_at), "source": _SOURCES[source >> 1]}


BODY_READERS: dict[str, dict[bytes, Callable[[bytes], tuple[int, dict[str, Any]]]]] = {
    "event": {bytes.fromhex("f7fc16b89047a5b6"): _read_event_v1},
}

EVENT = AvroType.load("event")
JOIN_RECORD = AvroType.load("join_record")
DEAD_LETTER = AvroType.load("dead_letter")
COMPONENT = AvroType.load("component")
