"""The rules of SPEC §1.1 (v3 events) and §1.2 (Zidium join records) as pure functions.

Nothing here does I/O or knows HTTP: a batch goes in, normalised values and errors *as data* come out.  The
resources decide what an error means for their API (v3: the whole batch is refused with 422; JoinEvents: the
record is ignored and dead-lettered).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from eventpipe.contract import MESSAGE_MAX, SECONDS_CEILING, SESSION_MAX, SESSION_MIN, VERSION_MAX
from eventpipe.settings import Settings

from .jsontext import dumps_compact

ACTIONS = ("START", "UPDATE", "END")
CLIENT_ID_MAX = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
IMPORTANCE_BY_NUMBER = {0: "Unknown", 50: "Success", 100: "Warning", 150: "Alarm"}
IMPORTANCE_BY_NAME = {name.lower(): name for name in IMPORTANCE_BY_NUMBER.values()}
_MS_DATE = re.compile(r"^/Date\((-?\d{1,15})([+-]\d{4})?\)/$")  # the old ASP.NET JSON date form


@dataclass(frozen=True, slots=True)
class Limits:
    """The configurable limits of one batch (SPEC §1.1 table, row 413, and the value-size rules)."""

    max_events: int = Settings.max_events
    max_entities: int = Settings.max_entities
    max_string_chars: int = Settings.max_string_chars
    max_json_depth: int = Settings.max_json_depth
    max_future_s: int = Settings.max_future_s

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(settings.max_events, settings.max_entities, settings.max_string_chars, settings.max_json_depth,
                   settings.max_future_s)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule: which event (``index`` in the batch), which ``field``, which ``rule``, and why."""

    index: int
    field: str
    rule: str
    message: str

    def as_detail(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "rule": self.rule, "message": self.message}


@dataclass(frozen=True, slots=True)
class V3Event:
    """A valid v3 event, normalised: entity values are already their JSON text."""

    action: str
    type: str
    timestamp: int
    session: str | None
    entities: tuple[tuple[str, str], ...]
    client_id: str | None


# --- v3 events ------------------------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utf8_ok(text: str) -> bool:
    """False for strings Kafka/Avro cannot carry: lone surrogates that JSON's \\uD800 escapes can produce."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # invalid input: a lone surrogate
        return False
    return True


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests arrays/objects deeper than ``limit`` (a scalar has depth 0). Iterative."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            depth += 1
            if depth > limit:
                return True
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _check_event(index: int, raw: Any, types: frozenset[str], limits: Limits,
                 errors: list[FieldError]) -> V3Event | None:
    """Validate one event, appending every broken rule to ``errors``; the event when it has none."""
    start = len(errors)

    def fail(field: str, rule: str, message: str) -> None:
        errors.append(FieldError(index, field, rule, message))

    if not isinstance(raw, dict):
        fail("", "type", f"an event must be a JSON object, not {_json_type(raw)}")
        return None

    action = raw.get("action")
    if action is None:
        fail("action", "required", "action is required (START, UPDATE or END)")
    elif action not in ACTIONS:
        fail("action", "enum", f"action must be START, UPDATE or END, not {_short(action)}")

    type_ = raw.get("type")
    if type_ is None:
        fail("type", "required", "type is required")
    elif not isinstance(type_, str) or type_ not in types:
        shown = ", ".join(sorted(types)[:20]) + (", …" if len(types) > 20 else "")
        fail("type", "enum", f"type {_short(type_)} is not a configured event type ({shown})")

    timestamp = raw.get("timestamp")
    if timestamp is None:
        fail("timestamp", "required", "timestamp (UNIX seconds) is required")
    elif not _is_int(timestamp):
        fail("timestamp", "integer", f"timestamp must be an integer number of UNIX seconds, not {_short(timestamp)}")
    elif timestamp >= SECONDS_CEILING:
        fail("timestamp", "seconds",
             f"timestamp {timestamp} looks like milliseconds; send UNIX seconds (e.g. {timestamp // 1000})")
    elif timestamp < 0:
        fail("timestamp", "range", "timestamp must not be negative")

    session = raw.get("session")
    if session is None:
        if action == "END":
            fail("session", "required", "session is required for END events")
    elif not isinstance(session, str):
        fail("session", "string", f"session must be a string, not {_json_type(session)}")
    elif not SESSION_MIN <= len(session) <= SESSION_MAX:
        fail("session", "length", f"session must be {SESSION_MIN}-{SESSION_MAX} characters long, not {len(session)}")
    elif not _utf8_ok(session):
        fail("session", "unicode", "session contains an unpaired UTF-16 surrogate")

    client_id = raw.get("id")
    if client_id is not None:
        if not isinstance(client_id, str):
            fail("id", "string", f"id must be a string, not {_json_type(client_id)}")
        elif not 1 <= len(client_id) <= CLIENT_ID_MAX:
            fail("id", "length", f"id must be 1-{CLIENT_ID_MAX} characters long, not {len(client_id)}")
        elif not _utf8_ok(client_id):
            fail("id", "unicode", "id contains an unpaired UTF-16 surrogate")

    entities = raw.get("entities")
    normalised: list[tuple[str, str]] = []
    if entities is None:
        fail("entities", "required", "entities is required (an array, possibly empty)")
    elif not isinstance(entities, list):
        fail("entities", "array", f"entities must be an array, not {_json_type(entities)}")
    elif len(entities) > limits.max_entities:
        fail("entities", "max_entities", f"an event has at most {limits.max_entities} entities, not {len(entities)}")
    else:
        for position, entity in enumerate(entities):
            pair = _check_entity(f"entities[{position}]", entity, limits, fail)
            if pair is not None:
                normalised.append(pair)

    if len(errors) > start:
        return None
    return V3Event(action, type_, timestamp, session, tuple(normalised), client_id)


def _check_entity(where: str, entity: Any, limits: Limits, fail) -> tuple[str, str] | None:
    if not isinstance(entity, dict):
        fail(where, "object", f"an entity must be an object {{\"key\": …, \"value\": …}}, not {_json_type(entity)}")
        return None
    key = entity.get("key")
    ok = True
    if not isinstance(key, str) or not key:
        fail(f"{where}.key", "required", "key must be a non-empty string")
        ok = False
    elif len(key) > limits.max_string_chars:
        fail(f"{where}.key", "max_string_chars", f"key is longer than {limits.max_string_chars} characters")
        ok = False
    elif not _utf8_ok(key):
        fail(f"{where}.key", "unicode", "key contains an unpaired UTF-16 surrogate")
        ok = False
    if "value" not in entity:
        fail(f"{where}.value", "required", "value is required (any JSON value, null included)")
        return None
    value = entity["value"]
    if json_depth_exceeds(value, limits.max_json_depth):
        fail(f"{where}.value", "max_json_depth", f"value nests deeper than {limits.max_json_depth} levels")
        return None
    try:
        text = dumps_compact(value)
    except ValueError:  # a number literal beyond double range parses as inf, which JSON cannot carry back
        fail(f"{where}.value", "number", "value contains a number outside the range of a double")
        return None
    if len(text) > limits.max_string_chars:
        fail(f"{where}.value", "max_string_chars",
             f"value is {len(text)} characters as JSON text, more than {limits.max_string_chars}")
        return None
    if not _utf8_ok(text):
        fail(f"{where}.value", "unicode", "value contains an unpaired UTF-16 surrogate")
        return None
    return (key, text) if ok else None


def validate_events(items: list[Any], types: frozenset[str], limits: Limits,
                    received_at_s: int | None = None) -> tuple[list[V3Event], list[FieldError]]:
    """Check every event of a batch. Returns (events, errors); the batch is acceptable only when errors is empty.

    Also enforces that client ids are unique within the batch (two events with one id would silently become one)
    and, given the receive time, that no event lies more than ``limits.max_future_s`` in the future.
    """
    errors: list[FieldError] = []
    events: list[V3Event] = []
    seen_ids: dict[str, int] = {}
    for index, raw in enumerate(items):
        event = _check_event(index, raw, types, limits, errors)
        if event is None:
            continue
        if received_at_s is not None and event.timestamp > received_at_s + limits.max_future_s:
            errors.append(FieldError(index, "timestamp", "future",
                                     f"timestamp {event.timestamp} is more than {limits.max_future_s} s after the "
                                     f"time it was received ({received_at_s})"))
            continue
        if event.client_id is not None:
            first = seen_ids.setdefault(event.client_id, index)
            if first != index:
                errors.append(FieldError(index, "id", "unique", f"id repeats the id of the event at index {first}"))
                continue
        events.append(event)
    return events, errors


# --- Zidium join records ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class JoinFields:
    """A valid JoinEvents record, normalised (GUIDs lower-case, StartDate in epoch milliseconds)."""

    event_id: str | None
    component_id: str
    type_id: str
    join_key: int
    start_date_ms: int
    join_interval: float
    importance: str
    count: int
    message: str
    version: str | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a join record is ignored: ``rule`` is a short stable label (a metrics label), ``reason`` the sentence."""

    rule: str
    reason: str


def casefold_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """Zidium's .NET clients match property names case-insensitively; so do we (the first spelling wins)."""
    folded: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(key, str):
            folded.setdefault(key.lower(), value)
    return folded


def parse_guid(value: Any) -> str | None:
    """A GUID in any of .NET's usual spellings as a lower-case hyphenated string; None when it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:  # invalid input: not a GUID
        return None


def parse_start_date(value: str) -> int | None:
    """ISO-8601 (UTC when no offset is given) or ``/Date(ms)/`` → epoch milliseconds; None when unreadable."""
    match = _MS_DATE.match(value)
    if match:
        return int(match.group(1))
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:  # invalid input: not ISO-8601
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def validate_join_record(raw: Any, received_at_ms: int,
                         max_future_s: int = Settings.max_future_s) -> JoinFields | Rejection:
    """Check one JoinEvents record (SPEC §1.2). Missing optional fields take their defaults."""
    if not isinstance(raw, dict):
        return Rejection("record:object", f"a record must be a JSON object, not {_json_type(raw)}")
    rec = casefold_keys(raw)

    event_id = None
    if rec.get("eventid") is not None:
        event_id = parse_guid(rec["eventid"])
        if event_id is None:
            return Rejection("EventId:guid", f"EventId {_short(rec['eventid'])} is not a GUID")
    ids = {}
    for name in ("ComponentId", "TypeId"):
        value = rec.get(name.lower())
        if value is None:
            return Rejection(f"{name}:required", f"{name} is required")
        ids[name] = parse_guid(value)
        if ids[name] is None:
            return Rejection(f"{name}:guid", f"{name} {_short(value)} is not a GUID")

    join_key = rec.get("joinkey")
    if join_key is None:
        join_key = 0
    elif not _is_int(join_key) or not INT64_MIN <= join_key <= INT64_MAX:
        return Rejection("JoinKey:int64", f"JoinKey must be a 64-bit integer, not {_short(join_key)}")

    start = rec.get("startdate")
    if start is None:
        start_ms = received_at_ms
    elif not isinstance(start, str) or (start_ms := parse_start_date(start)) is None:
        return Rejection("StartDate:datetime", f"StartDate must be an ISO-8601 date-time, not {_short(start)}")
    elif not INT64_MIN <= start_ms <= INT64_MAX:
        return Rejection("StartDate:range", "StartDate is out of range")
    elif start_ms > received_at_ms + max_future_s * 1000:
        return Rejection("StartDate:future", f"StartDate is more than {max_future_s} s after the time it was received")

    interval = rec.get("joininterval")
    if interval is None:
        interval = 0.0
    elif isinstance(interval, bool) or not isinstance(interval, (int, float)) or not math.isfinite(interval) \
            or interval < 0:
        return Rejection("JoinInterval:seconds",
                         f"JoinInterval must be a number of seconds >= 0, not {_short(interval)}")

    importance = rec.get("importance")
    if importance is None:
        importance = "Unknown"
    else:
        found = None
        if isinstance(importance, str):
            name = importance.strip()
            found = IMPORTANCE_BY_NAME.get(name.lower())
            if found is None and name.isdigit():
                found = IMPORTANCE_BY_NUMBER.get(int(name))
        elif _is_int(importance):
            found = IMPORTANCE_BY_NUMBER.get(importance)
        if found is None:
            return Rejection("Importance:enum", "Importance must be Success, Warning, Alarm or Unknown "
                                                f"(or 50/100/150/0), not {_short(importance)}")
        importance = found

    count = rec.get("count")
    if count is None:
        count = 1
    elif not _is_int(count) or count > INT64_MAX:
        return Rejection("Count:integer", f"Count must be an integer, not {_short(count)}")
    elif count < 1:
        count = 1

    message = rec.get("message")
    if message is None:
        message = ""
    elif not isinstance(message, str):
        return Rejection("Message:string", f"Message must be a string, not {_json_type(message)}")
    elif len(message) > MESSAGE_MAX:
        return Rejection("Message:length", f"Message is {len(message)} characters, more than {MESSAGE_MAX}")
    elif not _utf8_ok(message):
        return Rejection("Message:unicode", "Message contains an unpaired UTF-16 surrogate")

    version = rec.get("version")
    if version is not None:
        if not isinstance(version, str):
            return Rejection("Version:string", f"Version must be a string, not {_json_type(version)}")
        if len(version) > VERSION_MAX:
            return Rejection("Version:length", f"Version is {len(version)} characters, more than {VERSION_MAX}")
        if not _utf8_ok(version):
            return Rejection("Version:unicode", "Version contains an unpaired UTF-16 surrogate")

    return JoinFields(event_id, ids["ComponentId"], ids["TypeId"], join_key, start_ms, float(interval), importance,
                      count, message, version)


# --- helpers ------------------------------------------------------------------------------------------------------

def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    """A value quoted for an error message, cut short so a huge value cannot inflate the response."""
    if isinstance(value, (dict, list)):
        return _json_type(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    text = dumps_compact(value, ascii_only=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def iter_details(errors: Iterable[FieldError], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` errors as response ``details``."""
    out = []
    for error in errors:
        if len(out) >= limit:
            break
        out.append(error.as_detail())
    return out
