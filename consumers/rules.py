"""The rules of SPEC §1 re-checked on records read from Kafka — pure functions, no I/O.

The gateway validates HTTP input before it publishes; direct producers inside the network write straight to
the topics, so the consumers check the same rules again. A check returns ``None`` (the record is fine) or the
reason, naming the field, that goes into the dead letter. Records that pass are also normalised the way the
gateway would have (a join record's ``count < 1`` means 1).
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from eventpipe import contract
from eventpipe.contract import MESSAGE_MAX, SECONDS_CEILING, SESSION_MAX, SESSION_MIN, VERSION_MAX
from eventpipe.settings import Settings

MAX_ID_CHARS = 255
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def load_event_types(path: str) -> frozenset[str] | None:
    """The configured set of v3 types; ``None`` (any type passes) when this worker has no such file."""
    return contract.load_event_types(path) if Path(path).is_file() else None


def check_event(event: dict[str, Any], types: frozenset[str] | None,
                max_future_s: int = Settings.max_future_s) -> str | None:
    """The first rule a decoded v3 event breaks, or None. Sets each entity's ``text`` in place (its ClickHouse
    ``entities.value``: the plain string for a JSON string, the JSON text otherwise) while checking the JSON.

    An event more than ``max_future_s`` after its ``received_at`` is refused: its time would move the partition's
    event-time watermark and time out every open session there (as the gateway refuses it too)."""
    if not event["account_id"]:
        return "account_id: empty"
    if not event["event_id"] or len(event["event_id"]) > MAX_ID_CHARS:
        return f"event_id: must be 1..{MAX_ID_CHARS} characters"
    if types is not None and event["type"] not in types:
        return f"type: {event['type'][:64]!r} is not one of the configured types"
    ts = event["timestamp"]
    if ts < 0:
        return "timestamp: negative"
    if ts >= SECONDS_CEILING:
        return "timestamp: looks like milliseconds; UNIX seconds expected"
    if ts > event["received_at"].timestamp() + max_future_s:
        return f"timestamp: more than {max_future_s} s after received_at"
    session = event["session"]
    if session is None:
        if event["action"] == "END":
            return "session: required for END"
    elif not SESSION_MIN <= len(session) <= SESSION_MAX:
        return f"session: must be {SESSION_MIN}..{SESSION_MAX} characters"
    for i, entity in enumerate(event["entities"]):
        if not entity["key"]:
            return f"entities[{i}].key: empty"
        text = entity_text(entity["value"])
        if text is None:
            return f"entities[{i}].value: not JSON text"
        entity["text"] = text
    return None


# Most entity values are plain JSON strings, numbers or literals: recognised with a few string operations, they
# skip the JSON parser (its allocations were the largest per-record cost of the events and sessions workers).
_PLAIN_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = frozenset({"true", "false", "null"})


def entity_text(value: str) -> str | None:
    """An entity value's ``entities.value`` text: the string itself for a JSON string, the JSON text for any
    other JSON value; None when ``value`` is not JSON text."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if '"' not in inner and "\\" not in inner and inner.isprintable():  # no escapes, no control characters
            return inner
    elif value in _LITERALS or value[:1] in "-0123456789" and value and _PLAIN_NUMBER.fullmatch(value):
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, str) else value


def check_join_record(record: dict[str, Any], max_future_s: int = Settings.max_future_s) -> str | None:
    """The first rule a decoded join record breaks, or None. Normalises ``count`` in place (< 1 means 1)."""
    if not record["account_id"]:
        return "account_id: empty"
    if not record["record_id"] or len(record["record_id"]) > MAX_ID_CHARS:
        return f"record_id: must be 1..{MAX_ID_CHARS} characters"
    for name in ("component_id", "type_id"):
        if not _GUID.match(record[name]):
            return f"{name}: not a lower-case GUID"
    if record["event_id"] is not None and not _GUID.match(record["event_id"]):
        return "event_id: not a lower-case GUID"
    if record["start_date"] > record["received_at"] + timedelta(seconds=max_future_s):
        return f"start_date: more than {max_future_s} s after received_at"
    interval = record["join_interval"]
    if not math.isfinite(interval) or interval < 0:
        return "join_interval: must be a finite number of seconds >= 0"
    if len(record["message"]) > MESSAGE_MAX:
        return f"message: longer than {MESSAGE_MAX} characters"
    if record["version"] is not None and len(record["version"]) > VERSION_MAX:
        return f"version: longer than {VERSION_MAX} characters"
    if record["count"] < 1:
        record["count"] = 1
    return None
