"""Join windows (SPEC §3.2) — a pure state machine: no I/O, no clock, stdlib only.

One ``JoinWindows`` serves one Kafka input partition of ``PREFIX.joins`` (keyed by account, ComponentId, TypeId,
so every record that can meet a joined event reaches the same machine, in offset order). Time is event time only:
the watermark is the largest ``start_date`` (unix **milliseconds**) seen in the partition.

Rules, for a record R (times in ms, ``interval`` = round(R.join_interval × 1000), at most 100 years):

* Candidate: the live joined event whose id is R.event_id (same account, component, type); if there is none, or it
  is not joinable, the *latest* joined event of R's group ``(account, component, type, importance, join_key)`` —
  restricted to events with R's version when R has one. "Latest" = greatest ``end_time``, ties → created last.
* Joinable: same component, type, importance, join_key, same version when both have one,
  ``R.join_interval != 0`` and ``end_time + 1000 + interval ≥ R.start_date``. Then ``count += R.count``,
  ``end_time = max(end_time, R.start_date)``, ``actual_time = R.start_date + interval``, ``message = R.message``,
  ``records += 1``; the joined event keeps the version of the record that started it.
* Otherwise a new joined event: ``start_time = end_time = R.start_date``, ``actual_time = R.start_date +
  interval``, ``count = R.count``, ``records = 1``, ``version = R.version``; its id is R.event_id when no live
  joined event of the same (account, component, type) has it — the scope of ``joined_events``' sorting key —
  else ``uuid5(JOINED_EVENT_NAMESPACE, record_id)`` (suffixed ``#n`` on the unlikely collision).
* The same record (account, record_id) counts once: a re-delivery changes nothing.
* What SendEvent adds (``JoinRecord.extras``: category, the type's names and code, Properties) is carried like the
  message: a joined event shows the extras of the last record that had any.

The result is a function of the partition's records **in offset order** (joining is sequential by nature: which
event is "latest" depends on what came before), so it does not depend on batch boundaries, restarts, replays or
duplicate deliveries.

State, replay and retention:

* State entries: one per joined event — ``Change.key`` = ``event_key(account, component, type, event_id)`` (JSON
  text, the identity of the ``joined_events`` row), holding the row's fields and the offset of the last record
  applied; ``Change.row`` = the event's new row, ``row_version`` = the record's offset — plus its record digests
  (8 bytes of blake2b over account and record_id, and the record's start_date) in chunks of ``CHUNK_RECORDS``
  under ``chunk_key(event key, n)``, so a record rewrites one small chunk, never all digests. A chunk is dropped
  (``state=None``) once all its records are too late to come again (below), all of them when the event expires.
* A record whose offset is ≤ the last offset applied to any state of the machine is a replay and is ignored
  (this covers "≤ the offset last applied to its key").
* Retention ``JoinConfig.retention_s`` (default 25 h): a joined event leaves memory (``Change(key, None, None)``)
  once the watermark passes ``max(end_time, actual_time) + retention``. A record whose ``start_date + retention ≤
  watermark`` is too late: dropped and counted in ``dropped_late`` — it can no longer be told apart from a replay
  or re-delivery of a record whose event (or digest) is gone. Consequences, by design: a JoinInterval longer than
  the retention cannot reach an evicted event (it starts a new one), and an evicted event's id is unused again (a
  later record naming it starts a new joined event under that id, which replaces the old row).
* Memory: each live joined event, plus about 100 bytes per record of the last ``retention`` (digest chunk and
  the set that finds a re-delivery whichever event it went to). ``len(machine)`` = live joined events.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import math
import struct
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from typing import Any

from .keys import dumps, strings_key, uuid5_text
from .sessions import Change

__all__ = ["Change", "JOINED_EVENT_NAMESPACE", "JoinConfig", "JoinRecord", "JoinWindows", "JoinedEventRow",
           "chunk_key", "event_key"]

IMPORTANCES = ("Success", "Warning", "Alarm", "Unknown")
JOINED_EVENT_NAMESPACE = uuid.UUID("5d3c1f4e-2b7a-5e0c-9a41-6f0e8b2d7c13")
_FORMAT = 1
MAX_INTERVAL_S = 100 * 366 * 86400  # a longer JoinInterval counts as this much (keeps times in range)


@dataclass(frozen=True, slots=True)
class JoinConfig:
    retention_s: int = 90000

    def __post_init__(self) -> None:
        if self.retention_s <= 0:
            raise ValueError("retention_s must be positive")


@dataclass(frozen=True, slots=True)
class JoinRecord:
    account_id: str
    record_id: str  # deterministic id of the record
    event_id: str | None
    component_id: str
    type_id: str
    join_key: int
    start_date: int  # unix ms
    join_interval: float  # seconds >= 0
    importance: str  # Success | Warning | Alarm | Unknown
    count: int  # >= 1
    message: str
    version: str | None
    # SendEvent's additions, JSON-shaped: [category, type_system_name, type_display_name, type_code,
    # [[name, value, type], ...]]; None for JoinEvents records
    extras: list[Any] | None = None

    def __post_init__(self) -> None:
        if self.importance not in IMPORTANCES:
            raise ValueError(f"importance: {self.importance!r} is not one of {', '.join(IMPORTANCES)}")
        if self.count < 1:
            raise ValueError("count: must be >= 1")
        if not (math.isfinite(self.join_interval) and self.join_interval >= 0):
            raise ValueError("join_interval: must be a finite number of seconds >= 0")


@dataclass(frozen=True, slots=True)
class JoinedEventRow:
    account_id: str
    event_id: str
    component_id: str
    type_id: str
    join_key: int
    importance: str
    start_time: int  # unix ms
    end_time: int
    actual_time: int
    count: int
    message: str
    version: str | None
    records: int
    row_version: int
    extras: list[Any] | None = None  # as JoinRecord.extras


def event_key(account_id: str, component_id: str, type_id: str, event_id: str) -> str:
    """The persisted key of a joined event (JSON text: distinct events never share a key)."""
    return strings_key(account_id, component_id, type_id, event_id)


def chunk_key(event_key: str, n: int) -> str:
    """The persisted key of the n-th chunk of record digests of a joined event."""
    return f"{event_key}#{n}"


# A joined event in memory is one flat list indexed by these (one object per window: a million windows are held).
# The first STATE_FIELDS are its persisted state; DUE is timer bookkeeping; from CHUNKS on come the digests of its
# records, three items per chunk — its number n, its bytes, the largest start_date in it — oldest (smallest n)
# first, each chunk persisted under its own key so that a record rewrites one small chunk rather than every digest.
# EXTRA (SendEvent's additions) came later: a state written before it ends at LAST and is read with EXTRA = None.
(ACCOUNT, COMPONENT, TYPE, IMPORTANCE, JOIN_KEY, ID, VERSION, START, END, ACTUAL, COUNT, MESSAGE, RECORDS, CREATED,
 LAST, EXTRA, DUE, CHUNKS) = range(18)
STATE_FIELDS = DUE
CHUNK_RECORDS = 64  # records per digest chunk: a record rewrites at most ~1.4 kB of digests
_SEEN = 16  # bytes per record in a chunk: 8-byte digest of (account, record_id), start_date as little-endian int64

# The groups are indexed in two levels — (account, component, type, importance), then join_key — so that a
# group's entry costs a dict slot, not also a 5-tuple of its own (there are about as many groups as windows).
_Scope = tuple[str, str, str, str]  # account, component, type, importance


class _Members:
    """The live joined events of a group of two or more, with the latest one (overall and per version) at hand.
    A group of one (nearly all of them) is held as that event's key alone: it is its own latest."""

    __slots__ = ("keys", "latest", "latest_by_version")

    def __init__(self, key: str, version: str | None) -> None:
        self.keys: dict[str, None] = {key: None}  # an ordered set
        self.latest: str = key
        self.latest_by_version: dict[str, str] | None = None if version is None else {version: key}  # lazily


def _latest(members: str | _Members, version: str | None, events: dict[str, list[Any]]) -> str | None:
    """The group's latest event (overall, or of ``version``)."""
    if members.__class__ is str:
        return members if version is None or events[members][VERSION] == version else None
    if version is None:
        return members.latest
    return None if members.latest_by_version is None else members.latest_by_version.get(version)


def _digest(account_id: str, record_id: str) -> bytes:
    return blake2b(f"{account_id}\x1f{record_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _order(ev: list[Any]) -> tuple[int, int]:
    return ev[END], ev[CREATED]


class JoinWindows:
    """Joins the records of one partition into ``joined_events`` rows. Pure and single-threaded; never blocks."""

    __slots__ = ("_cfg", "_ret", "_w", "_high", "_events", "_groups", "_seen", "_heap", "dropped_late")

    def __init__(self, config: JoinConfig = JoinConfig(), watermark: int = 0, states: Iterable[bytes] = ()) -> None:
        """Restore from a watermark (ms) and the bytes of every persisted state. Raises ValueError on corrupt state."""
        self._cfg = config
        self._ret = config.retention_s * 1000
        self._w = watermark
        self._high = -1  # the largest offset applied to any state: anything at or below it is a replay
        self._events: dict[str, list[Any]] = {}
        self._groups: dict[_Scope, dict[int, str | _Members]] = {}
        self._seen: set[bytes] = set()  # digests of the records held in chunks, all events together
        self._heap: list[tuple[int, str]] = []
        self.dropped_late = 0  # records too late to join (see module docstring); a metric for the shell
        # Restore (a million windows after a kill -9, before the partition is consumed again): no per-key work that
        # can be done in bulk — each blob decoded once, the chunks' digests and starts unpacked in C, the expiry
        # heap made in one heapify, and the repeated strings interned, as a window made by a record has them.
        events = self._events
        chunks: list[tuple[str, int, bytes]] = []
        high = -1
        for blob in states:
            key, decoded = _decode(blob)
            if decoded.__class__ is list:
                events[key] = decoded
                if decoded[LAST] > high:
                    high = decoded[LAST]
            else:
                chunks.append((key, *decoded))
        self._high = high
        chunks.sort(key=_second)  # by chunk number, stable: a window's chunks go in oldest first
        seen = self._seen
        for key, n, digests in chunks:
            ev = events.get(key)
            if ev is None:
                raise ValueError(f"join state: digest chunk {n} of {key} without its event")
            fields = _unpacker(len(digests) // _SEEN).unpack(digests)  # digest, start, digest, start, ...
            seen.update(fields[0::2])
            if len(ev) == CHUNKS:
                events[key] = ev + [n, digests, max(fields[1::2])]  # allocated at its size
            else:
                ev += (n, digests, max(fields[1::2]))
        intern, ret, heap = sys.intern, self._ret, self._heap
        for key, ev in events.items():
            ev[ACCOUNT], ev[COMPONENT], ev[TYPE] = intern(ev[ACCOUNT]), intern(ev[COMPONENT]), intern(ev[TYPE])
            if ev[IMPORTANCE].__class__ is str:
                ev[IMPORTANCE] = intern(ev[IMPORTANCE])
            if ev[VERSION].__class__ is str:
                ev[VERSION] = intern(ev[VERSION])
            if ev[END] == ev[START] and ev[END].__class__ is ev[START].__class__:
                ev[END] = ev[START]  # one int object, as a window made by a record has
            if ev[LAST] == ev[CREATED] and ev[LAST].__class__ is ev[CREATED].__class__:
                ev[LAST] = ev[CREATED]
            ev[DUE] = due = max(ev[END], ev[ACTUAL]) + ret
            heap.append((due, key))
            self._admit(key, ev)
        heapq.heapify(heap)

    @property
    def watermark(self) -> int:
        return self._w

    def __len__(self) -> int:
        return len(self._events)

    def snapshot(self) -> Iterator[tuple[str, bytes]]:
        """Every live state key with its serialized state (what a full persist would write)."""
        for key, ev in self._events.items():
            yield key, _encode(ev)
            for i in range(CHUNKS, len(ev), 3):
                yield chunk_key(key, ev[i]), _encode_chunk(ev, ev[i], ev[i + 1])

    def rows(self) -> list[JoinedEventRow]:
        """Current rows of every joined event in memory (row_version 0). For tests and debugging."""
        return [_row(ev, 0) for ev in self._events.values()]

    # --- the one entry point -----------------------------------------------------------------------------------
    def process(self, event: JoinRecord, offset: int) -> list[Change[JoinedEventRow]]:
        """Expire what the record's start_date expires, then apply the record (Kafka ``offset``); return the changes.

        One ``Change`` per state entry touched (joined event or digest chunk), sorted by key; the joined event's
        new row rides on its own key's change. Never blocks; raises nothing for a valid record.
        """
        r = event
        w0 = self._w
        w = r.start_date if r.start_date > w0 else w0
        self._w = w
        changes: dict[str, Change[JoinedEventRow]] = {}
        self._fire(w, changes)  # expiry first: whether this record or another one moved the watermark is all one

        if offset <= self._high:
            pass  # replay of a record already seen
        elif r.start_date + self._ret <= w0:
            self.dropped_late += 1
        else:
            digest = _digest(r.account_id, r.record_id)
            if digest not in self._seen:
                key, ev = self._join(r, offset)
                changes[key] = Change(key, _row(ev, offset), _encode(ev))  # an id evicted just now: new state wins
                self._remember(key, ev, digest, r.start_date, w, changes)
                self._high = offset
        return [changes[k] for k in sorted(changes)]

    # --- internals ---------------------------------------------------------------------------------------------
    def _join(self, r: JoinRecord, offset: int) -> tuple[str, list[Any]]:
        interval = round(min(r.join_interval, MAX_INTERVAL_S) * 1000)
        target_key = None
        if r.event_id is not None:
            named = event_key(r.account_id, r.component_id, r.type_id, r.event_id)
            if named in self._events and _joinable(self._events[named], r, interval):
                target_key = named
        scope = self._groups.get((r.account_id, r.component_id, r.type_id, r.importance))
        members = None if scope is None else scope.get(r.join_key)
        if target_key is None and members is not None and r.join_interval != 0:
            latest = _latest(members, r.version, self._events)
            if latest is not None and _joinable(self._events[latest], r, interval):
                target_key = latest
        if target_key is not None:
            ev = self._events[target_key]
            ev[COUNT] += r.count
            ev[END] = max(ev[END], r.start_date)
            ev[ACTUAL] = r.start_date + interval
            ev[MESSAGE] = r.message
            ev[RECORDS] += 1
            ev[LAST] = offset
            if r.extras is not None:
                ev[EXTRA] = r.extras
            self._admit(target_key, ev)
            if max(ev[END], ev[ACTUAL]) + self._ret < ev[DUE]:  # expiry moved earlier (a shorter interval)
                self._schedule(target_key, ev)
            return target_key, ev
        event_id = r.event_id
        if event_id is None or event_key(r.account_id, r.component_id, r.type_id, event_id) in self._events:
            base = uuid5_text(JOINED_EVENT_NAMESPACE, r.record_id)
            event_id, n = base, 0
            while event_key(r.account_id, r.component_id, r.type_id, event_id) in self._events:
                n += 1
                event_id = f"{base}#{n}"
        key = event_key(r.account_id, r.component_id, r.type_id, event_id)
        # the ids, importance and version repeat across windows: one string object each (sys.intern: freed with
        # the last window holding it), not one per decoded record
        intern = sys.intern
        ev = [intern(r.account_id), intern(r.component_id), intern(r.type_id), intern(r.importance), r.join_key,
              event_id, None if r.version is None else intern(r.version), r.start_date, r.start_date,
              r.start_date + interval, r.count, r.message, 1, offset, offset, r.extras, 0, 0, b"", r.start_date]
        # (its first chunk, empty, is made with it: _remember fills it, and the list is allocated once)
        self._events[key] = ev
        self._admit(key, ev)
        self._schedule(key, ev)
        return key, ev

    def _remember(self, key: str, ev: list[Any], digest: bytes, start: int, w: int,
                  changes: dict[str, Change[JoinedEventRow]]) -> None:
        """Record the digest in the event's last chunk; drop its oldest chunks once all of them are too late."""
        self._seen.add(digest)
        i, end = CHUNKS, len(ev)
        while i < end and ev[i + 2] + self._ret <= w:  # oldest first; a chunk kept a little longer because of a
            self._forget(ev[i + 1])                    # later one costs nothing
            changes[chunk_key(key, ev[i])] = Change(chunk_key(key, ev[i]), None, None)
            i += 3
        if i > CHUNKS:
            del ev[CHUNKS:i]
        if len(ev) == CHUNKS:  # none left: numbering starts again at 0
            ev += (0, b"", start)
        elif len(ev[-2]) >= CHUNK_RECORDS * _SEEN:
            ev += (ev[-3] + 1, b"", start)
        n = ev[-3]
        ev[-2] += digest + start.to_bytes(8, "little", signed=True)
        if start > ev[-1]:
            ev[-1] = start
        changes[chunk_key(key, n)] = Change(chunk_key(key, n), None, _encode_chunk(ev, n, ev[-2]))

    def _forget(self, digests: bytes) -> None:
        for i in range(0, len(digests), _SEEN):
            self._seen.discard(digests[i:i + 8])

    def _admit(self, key: str, ev: list[Any]) -> None:
        """Index a new or extended event in its group (its end_time only grows, so it can only become latest)."""
        scope = self._groups.get((ev[ACCOUNT], ev[COMPONENT], ev[TYPE], ev[IMPORTANCE]))
        if scope is None:
            scope = self._groups[(ev[ACCOUNT], ev[COMPONENT], ev[TYPE], ev[IMPORTANCE])] = {}
        join_key = ev[JOIN_KEY]
        members = scope.get(join_key)
        if members is None:
            scope[join_key] = key  # a group of one
            return
        if members.__class__ is str:
            if members == key:
                return  # still the only one, so still the latest
            members = scope[join_key] = _Members(members, self._events[members][VERSION])
        members.keys[key] = None
        if _order(self._events[members.latest]) <= _order(ev):
            members.latest = key
        version = ev[VERSION]
        if version is not None:
            by_version = members.latest_by_version
            if by_version is None:
                by_version = members.latest_by_version = {}
            current = by_version.get(version)
            if current is None or _order(self._events[current]) <= _order(ev):
                by_version[version] = key

    def _evict(self, key: str, changes: dict[str, Change[JoinedEventRow]]) -> None:
        ev = self._events.pop(key)
        changes[key] = Change(key, None, None)
        for i in range(CHUNKS, len(ev), 3):
            self._forget(ev[i + 1])
            changes[chunk_key(key, ev[i])] = Change(chunk_key(key, ev[i]), None, None)
        outer: _Scope = (ev[ACCOUNT], ev[COMPONENT], ev[TYPE], ev[IMPORTANCE])
        scope, join_key = self._groups[outer], ev[JOIN_KEY]
        members = scope[join_key]
        if members.__class__ is str:  # it was the only one
            del scope[join_key]
            if not scope:
                del self._groups[outer]
            return
        del members.keys[key]
        if len(members.keys) == 1:  # a group of one again: its key alone
            scope[join_key] = next(iter(members.keys))
            return
        if members.latest == key:
            members.latest = max(members.keys, key=lambda k: _order(self._events[k]))
        version = ev[VERSION]
        by_version = members.latest_by_version
        if version is not None and by_version is not None and by_version.get(version) == key:
            same = [k for k in members.keys if self._events[k][VERSION] == version]
            if same:
                by_version[version] = max(same, key=lambda k: _order(self._events[k]))
            else:
                del by_version[version]

    def _schedule(self, key: str, ev: list[Any]) -> None:
        ev[DUE] = max(ev[END], ev[ACTUAL]) + self._ret
        heapq.heappush(self._heap, (ev[DUE], key))

    def _fire(self, w: int, changes: dict[str, Change[JoinedEventRow]]) -> None:
        heap, events = self._heap, self._events
        while heap and heap[0][0] <= w:
            due, key = heapq.heappop(heap)
            ev = events.get(key)
            if ev is None or ev[DUE] != due:
                continue  # stale entry
            if max(ev[END], ev[ACTUAL]) + self._ret <= w:
                self._evict(key, changes)
            else:  # extended since it was scheduled
                self._schedule(key, ev)


def _joinable(ev: list[Any], r: JoinRecord, interval: int) -> bool:
    if (ev[IMPORTANCE], ev[JOIN_KEY]) != (r.importance, r.join_key):
        return False
    if ev[VERSION] is not None and r.version is not None and ev[VERSION] != r.version:
        return False
    return r.join_interval != 0 and ev[END] + 1000 + interval >= r.start_date


def _row(ev: list[Any], version: int) -> JoinedEventRow:
    return JoinedEventRow(ev[ACCOUNT], ev[ID], ev[COMPONENT], ev[TYPE], ev[JOIN_KEY], ev[IMPORTANCE], ev[START],
                          ev[END], ev[ACTUAL], ev[COUNT], ev[MESSAGE], ev[VERSION], ev[RECORDS], version, ev[EXTRA])


def _second(item: tuple[Any, ...]) -> Any:
    return item[1]


@lru_cache(maxsize=256)
def _unpacker(records: int) -> struct.Struct:
    """Reads a digest chunk of ``records`` records as digest (8 bytes), start_date (little-endian int64), ..."""
    return struct.Struct("<" + "8sq" * records)


def _encode(ev: list[Any]) -> bytes:
    return dumps({"v": _FORMAT, "e": ev[:STATE_FIELDS]}).encode()


def _encode_chunk(ev: list[Any], n: int, digests: bytes) -> bytes:
    doc = {"v": _FORMAT, "c": [ev[ACCOUNT], ev[COMPONENT], ev[TYPE], ev[ID], n],
           "d": base64.b64encode(digests).decode("ascii")}
    return dumps(doc).encode()


def _decode(blob: bytes) -> tuple[str, list[Any] | tuple[int, bytes]]:
    """``(event key, event)`` or ``(event key, (chunk number, digests))``. Raises ValueError on corrupt state."""
    try:
        text = bytes(blob).decode("utf-8")
        try:  # the scanner alone: what json.loads does for a document without surrounding whitespace
            doc, end = _scan(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            doc = json.loads(text)  # anything else (and its error) exactly as json.loads has it
        # as strings_key: a document without a backslash has no string that JSON escapes
        plain = "\\" not in text
        if doc["v"] != _FORMAT:
            raise ValueError(f"unknown join state format {doc['v']}")
        if "c" in doc:
            account, component, type_, event_id, n = doc["c"]
            digests = binascii.a2b_base64(doc["d"], strict_mode=True)  # base64.b64decode(..., validate=True)
            if not digests or len(digests) % _SEEN or not isinstance(n, int):
                raise ValueError("malformed digest chunk")
            return _key(account, component, type_, event_id, plain), (n, digests)
        ev = list(doc["e"])
        if len(ev) == EXTRA:  # written before EXTRA existed
            ev.append(None)
        ev.append(0)
        if len(ev) != CHUNKS:
            raise ValueError("malformed joined event state")
        return _key(ev[ACCOUNT], ev[COMPONENT], ev[TYPE], ev[ID], plain), ev
    except (KeyError, TypeError, ValueError) as exc:  # invalid input: corrupt persisted state
        raise ValueError(f"corrupt join state: {exc}") from exc


_scan = json.JSONDecoder().scan_once


def _key(account_id: str, component_id: str, type_id: str, event_id: str, plain: bool) -> str:
    """``event_key`` of strings decoded from a state; ``plain``: that state had no JSON escape (then none of them
    needs one, and the key is assembled directly)."""
    if plain:
        return '["' + '","'.join((account_id, component_id, type_id, event_id)) + '"]'
    return event_key(account_id, component_id, type_id, event_id)
