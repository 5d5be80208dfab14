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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        return cls(name=name, schema=parsed, header=MAGIC + fp, writers=writers)

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
        body = io.BytesIO(frame[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(body, writer, None if writer is self.schema else self.schema)
        except Exception as exc:  # invalid input: fastavro raises many types for truncated/garbled bodies
            raise DecodeError(f"{self.name} body does not decode: {type(exc).__name__}: {exc}") from None
        if body.tell() != len(frame) - HEADER_LEN:
            raise DecodeError(f"{self.name} body has {len(frame) - HEADER_LEN - body.tell()} trailing bytes")
        return record


EVENT = AvroType.load("event")
JOIN_RECORD = AvroType.load("join_record")
DEAD_LETTER = AvroType.load("dead_letter")
COMPONENT = AvroType.load("component")
