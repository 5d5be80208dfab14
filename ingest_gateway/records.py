"""From validated input to what goes on Kafka: deterministic ids, partition keys and the Avro record dicts.

Pure functions (SPEC §2).  The ids depend only on the account, the content and the position among identical
items of one request, so a client that retries a batch after a 503 produces the same ids again and the
consumers can deduplicate; two identical events in one batch still get two ids.  A session id makes an event
device-specific; an event without one (and without a client ``id``) also depends on the whole batch it came in,
or two devices sending the same sessionless event in the same second would collapse into one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from .jsontext import dumps_canonical, dumps_compact
from .validation import JoinFields, V3Event

SOURCE = "http"
# A payload copied into a dead letter is cut to this many characters (Kafka's default record limit is 1 MiB).
DEAD_LETTER_PAYLOAD_MAX = 200_000  # characters: at most 4 bytes each in UTF-8, so < 1 MB


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record to publish."""

    topic: str
    key: bytes | None
    value: bytes


def derive_id(kind: str, account: str, canonical: str, occurrence: int) -> str:
    """A UUID-shaped id from SHA-256 of (kind, account, canonical content, occurrence). Deterministic.

    Marked version 5 (name-based, SHA) — like ``uuid.uuid5`` but with SHA-256 over an unambiguous name; formatted
    by hand because building ``uuid.UUID`` objects costs more than the hash.
    """
    raw = bytearray(hashlib.sha256("\x00".join((kind, account, canonical, str(occurrence))).encode("utf-8"))
                    .digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _field(text: str | None) -> str:
    """Length-prefixed, so no choice of characters in one field can imitate a field boundary."""
    return "-" if text is None else f"{len(text)}:{text}"


def event_canonical(event: V3Event) -> str:
    """The canonical content of a v3 event (the client ``id`` excluded): what makes two events identical.

    Entity values are already canonical JSON text; member order inside objects counts as content.
    """
    parts = [event.action, event.type, str(event.timestamp), _field(event.session), str(len(event.entities))]
    for key, value in event.entities:
        parts.append(_field(key))
        parts.append(_field(value))
    return "|".join(parts)


def with_occurrences(canonicals: Iterable[str]) -> Iterator[tuple[str, int]]:
    """Pair each canonical text with its occurrence number (0, 1, …) among equal texts seen before it."""
    seen: dict[str, int] = {}
    for text in canonicals:
        n = seen.get(text, 0)
        seen[text] = n + 1
        yield text, n


def batch_canonical(canonicals: Iterable[str], client_ids: Iterable[str | None]) -> str:
    """The canonical form of a whole batch, as a digest: its events' canonical contents (with their client ids)
    as a sorted multiset, so a retry gives the same text however its JSON was spaced, its members or its events
    ordered."""
    items = sorted(f"{_field(cid)}{_field(text)}" for text, cid in zip(canonicals, client_ids))
    return hashlib.sha256("".join(items).encode("utf-8", "surrogatepass")).hexdigest()


def event_ids(account: str, events: list[V3Event]) -> list[str]:
    """The ``event_id`` of each event of one batch: the client ``id`` when given, else derived from the account,
    the canonical content and the occurrence number among identical events without a client id — and, for an
    event without a session, from the batch's canonical form too (SPEC §2)."""
    canonicals = [event_canonical(e) for e in events]
    batch = None
    if any(e.session is None and e.client_id is None for e in events):
        batch = batch_canonical(canonicals, (e.client_id for e in events))
    derived = iter(derive_id("event" if event.session is not None else f"event-in-batch:{batch}", account,
                             canonical, n)
                   for event, (canonical, n) in zip(
                       (e for e in events if e.client_id is None),
                       with_occurrences(c for c, e in zip(canonicals, events) if e.client_id is None)))
    return [e.client_id if e.client_id is not None else next(derived) for e in events]


def event_key(account: str, event: V3Event) -> bytes:
    """Partition key: ``(account, session, type)``, or ``(account, type)`` for an event without a session."""
    parts = (account, event.session, event.type) if event.session is not None else (account, event.type)
    return ("[" + ",".join(map(dumps_compact, parts)) + "]").encode("utf-8")


def event_record(account: str, event_id: str, event: V3Event, received_at_ms: int) -> dict[str, Any]:
    """The dict ``eventpipe.codec.EVENT`` encodes."""
    return {
        "account_id": account,
        "event_id": event_id,
        "action": event.action,
        "type": event.type,
        "timestamp": event.timestamp,
        "session": event.session,
        "entities": [{"key": k, "value": v} for k, v in event.entities],
        "received_at": received_at_ms,
        "source": SOURCE,
    }


def join_key(account: str, fields: JoinFields) -> bytes:
    """Partition key of a join record: ``(account, ComponentId, TypeId)``."""
    return dumps_compact([account, fields.component_id, fields.type_id]).encode("utf-8")


def join_record(account: str, record_id: str, fields: JoinFields, received_at_ms: int) -> dict[str, Any]:
    """The dict ``eventpipe.codec.JOIN_RECORD`` encodes."""
    return {
        "account_id": account,
        "record_id": record_id,
        "event_id": fields.event_id,
        "component_id": fields.component_id,
        "type_id": fields.type_id,
        "join_key": fields.join_key,
        "start_date": fields.start_date_ms,
        "join_interval": fields.join_interval,
        "importance": fields.importance,
        "count": fields.count,
        "message": fields.message,
        "version": fields.version,
        "received_at": received_at_ms,
        "source": SOURCE,
    }


def raw_canonical(raw: Any) -> str:
    """Canonical text of a record *as sent* (so a retry without StartDate still gets the same record_id)."""
    try:
        return dumps_canonical(raw)
    except ValueError:  # inf from an out-of-range number literal: fall back to repr, still deterministic
        return repr(raw)


def payload_text(raw: Any) -> tuple[str, bool]:
    """JSON text of a rejected record for its dead letter, and whether it had to be cut to fit in Kafka."""
    try:
        text = dumps_compact(raw)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError):  # inf, or lone surrogates: escape everything instead
        text = raw_canonical(raw)
    if len(text) > DEAD_LETTER_PAYLOAD_MAX:
        return text[:DEAD_LETTER_PAYLOAD_MAX], True
    return text, False


def dead_letter(account: str, reason: str, raw: Any, received_at_ms: int) -> dict[str, Any]:
    """The dict ``eventpipe.codec.DEAD_LETTER`` encodes for an ignored HTTP record."""
    payload, cut = payload_text(raw)
    if cut:
        reason += f" (payload cut to its first {DEAD_LETTER_PAYLOAD_MAX} characters)"
    return {
        "received_at": received_at_ms,
        "source": SOURCE,
        "topic": None,
        "partition": None,
        "offset": None,
        "account_id": account,
        "reason": reason,
        "payload": payload,
    }
