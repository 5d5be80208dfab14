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
  text, the identity of the ``joined_events`` row), holding the row's fields, the offset of the last record
  applied and the digests of its latest records (8 bytes of blake2b over account and record_id, and the record's
  start_date; up to ``CHUNK_RECORDS`` of them); ``Change.row`` = the event's new row, ``row_version`` = the
  record's offset. A full chunk of digests moves out to a state of its own, ``chunk_key(event key, n)``, written
  once, so a record rewrites at most one chunk's digests, never all of them. Such a chunk is dropped
  (``state=None``) once all its records are too late to come again (below), and with its event when it expires.
* A record whose offset is ≤ the last offset applied to any state of the machine is a replay and is ignored
  (this covers "≤ the offset last applied to its key").
* Retention ``JoinConfig.retention_s`` (default 25 h): a joined event leaves memory (``Change(key, None, None)``)
  once the watermark passes ``max(end_time, actual_time) + retention``. A record whose ``start_date + retention ≤
  watermark`` is too late: dropped and counted in ``dropped_late`` — it can no longer be told apart from a replay
  or re-delivery of a record whose event (or digest) is gone. Consequences, by design: a JoinInterval longer than
  the retention cannot reach an evicted event (it starts a new one), and an evicted event's id is unused again (a
  later record naming it starts a new joined event under that id, which replaces the old row).
* Memory (a million windows are held, and restored after a kill -9): a live joined event is one ``bytes``, its
  persisted state without the identity, in a dict per (account, component, type) under its id (a UUID as an
  int) — fields are unpacked only for the events a record touches — plus a slot in its group's packed index and
  two in a timer bucket; a record's digest costs 16 bytes in its event (or chunk) and 8 to 16 in one flat table
  that finds a re-delivery whichever event it went to. About 300 bytes a window in all (``python -m
  bench.state_memory``). ``len(machine)`` = live joined events.
"""

from __future__ import annotations

import heapq
import json
import math
import struct
import sys
import uuid
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from .keys import dumps, strings_key, uuid5_int, uuid_text
from .sessions import Change

__all__ = ["Change", "JOINED_EVENT_NAMESPACE", "JoinConfig", "JoinRecord", "JoinWindows", "JoinedEventRow",
           "chunk_key", "event_key"]

IMPORTANCES = ("Success", "Warning", "Alarm", "Unknown")
_IMPORTANCE = {name: i for i, name in enumerate(IMPORTANCES)}
JOINED_EVENT_NAMESPACE = uuid.UUID("5d3c1f4e-2b7a-5e0c-9a41-6f0e8b2d7c13")
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


# An event id in memory: a UUID in canonical text (as derived ids, and as clients mostly send them) as its int
# (48 bytes, where its text takes 85), anything else as its text — one key per id either way.
EventId = int | str


def _id_key(text: str) -> EventId:
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        h = text.replace("-", "")
        # canonical: 32 lowercase hex digits (int() alone takes more: '_', spaces, a sign, other scripts' digits)
        if len(h) == 32 and h.isascii() and h.isalnum() and h == h.lower():
            try:
                return int(h, 16)
            except ValueError:  # a letter after f
                return text
    return text


def _id_text(event_id: EventId) -> str:
    return event_id if event_id.__class__ is str else uuid_text(event_id)


# A joined event in memory is its *value*: this header, its version, message and extras (JSON) as UTF-8, then the
# digests of its last chunk, 16 bytes a record — digest, start_date (little-endian int64). Lengths of version and
# extras are stored + 1 (0: None); a message and a version fit 16 bits (rules.py: 8000 and 255 characters). The
# persisted state is the value behind the event's identity (_encode), so a restore slices it out of the row and
# builds nothing else per field. (With a one-character message and one digest a value is 90 bytes: as a bytes
# object 123, in pymalloc's 128-byte size class.)
_HDR = struct.Struct("<qqqqqIqqIBHHI")
(JOIN_KEY, START, END, ACTUAL, COUNT, RECORDS, CREATED, LAST, CHUNK, IMPORTANCE, VERSION_LEN, MESSAGE_LEN,
 EXTRA_LEN) = range(13)
_HDR_SIZE = _HDR.size
CHUNK_RECORDS = 64  # records per digest chunk: a record rewrites at most ~1 kB of digests
_SEEN = 16  # bytes per record in a chunk
_FORMAT = 2  # first byte of a persisted state (1: the JSON documents before issue 16's second round)
_EVENT, _CHUNK = 0, 1  # its second byte
_FRAME = struct.Struct("<BBH")  # format, kind, length of the scope's JSON text; then that text
_ID = struct.Struct("<H")  # length of the event id; then the id, then the value (event) or _CHUNK_NO + digests
_UUID_ID = 2  # in the kind: the id is a UUID's 16 bytes (see _id_key), not its text
_CHUNK_NO = struct.Struct("<I")
# Expiry is kept in buckets of 2**_BUCKET_BITS ms of due time (an event costs two list slots, not a heap entry of
# its own); the buckets the watermark has reached are spread into a heap, a few events at a time.
_BUCKET_BITS = 16


class _Scope:
    """The live joined events of one (account, component, type): by id, and their groups' latest."""

    __slots__ = ("account", "component", "type", "frame", "events", "groups", "older")

    def __init__(self, account: str, component: str, type_: str) -> None:
        intern = sys.intern  # the same ids in every scope of an account, and in the restore's frames
        self.account, self.component, self.type = intern(account), intern(component), intern(type_)
        self.frame = strings_key(self.account, self.component, self.type).encode("utf-8", "surrogatepass")
        self.events: dict[EventId, bytes] = {}
        self.groups = _Groups(self.events)
        # an event's full chunks, oldest first, as (n, digests, largest start_date) triples; few events have any
        self.older: dict[str, list[Any]] | None = None

    def key(self, event_id: EventId) -> str:
        return event_key(self.account, self.component, self.type, _id_text(event_id))


class _Members:
    """The live joined events of a group of two or more, with the latest one (overall and per version) at hand.
    A group of one (nearly all of them) is held as that event's id alone: it is its own latest."""

    __slots__ = ("group", "ids", "latest", "latest_by_version")

    def __init__(self, group: int, event_id: EventId, version: str | None) -> None:
        self.group = group
        self.ids: dict[EventId, None] = {event_id: None}  # an ordered set
        self.latest: EventId = event_id
        self.latest_by_version: dict[str, EventId] | None = None if version is None else {version: event_id}  # lazily


class _Groups:
    """The groups of one scope, by ``join_key * 4 + importance``: each one's id (a group of one) or ``_Members``.
    A packed table — open addressing over a 64-bit hash of the group, linear probing, deletion by backward shift —
    of about 30 bytes a group, where a dict costs about 80 (its slot and an int object per group); a slot's group
    is read back from its event, so a false match of the hash is told apart."""

    __slots__ = ("_events", "_hashes", "_entries", "_shift", "_n")

    def __init__(self, events: dict[EventId, bytes]) -> None:
        self._events = events
        self._hashes = array("Q", bytes(8 * 4))
        self._entries: list[EventId | _Members | None] = [None] * 4
        self._shift = 62  # a slot is the hash's top bits (a multiplicative hash's best ones)
        self._n = 0

    def get(self, group: int) -> EventId | _Members | None:
        i, _, found = self._find(group)
        return self._entries[i] if found else None

    def setdefault(self, group: int, entry: EventId) -> EventId | _Members:
        """The group's entry; ``entry`` put there first when the group has none."""
        i, h, found = self._find(group)
        if found:
            return self._entries[i]
        self._add(i, h, entry)
        return entry

    def put(self, group: int, entry: EventId | _Members) -> None:
        i, h, found = self._find(group)
        if found:
            self._entries[i] = entry
        else:
            self._add(i, h, entry)

    def _add(self, i: int, h: int, entry: EventId | _Members) -> None:
        """Fill the free slot ``i`` that ``_find`` gave for hash ``h``."""
        self._hashes[i], self._entries[i] = h, entry
        self._n += 1
        if 10 * self._n > 7 * len(self._hashes):
            self._resize(self._n)

    def fill(self) -> list[tuple[EventId, bytes]]:
        """Index every event of the (empty) table's scope — a restore: the table sized once, no method call per
        event; returns the events whose group already had one (``(id, value)``), to be admitted as members."""
        events = self._events
        self._resize(len(events))  # as if every event began a group of its own: no growth on the way
        hashes, entries, shift, unpack = self._hashes, self._entries, self._shift, _GROUP.unpack_from
        mask = len(hashes) - 1
        more = []
        for event_id, value in events.items():
            join_key, importance = unpack(value)
            group = join_key * 4 + importance
            h = (group * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF or 1  # as _find
            i = h >> shift
            while True:
                s = hashes[i]
                if not s:
                    hashes[i], entries[i] = h, event_id
                    break
                if s == h:  # every entry is an id yet
                    join_key, importance = unpack(events[entries[i]])
                    if join_key * 4 + importance == group:
                        more.append((event_id, value))
                        break
                i = (i + 1) & mask
        self._n = len(events) - len(more)
        if more:  # then fewer groups than events: the size for that many
            self._resize(self._n)
        return more

    def _resize(self, n: int) -> None:
        """Give the table its size for ``n`` groups: the smallest power of two (at least 4) filled to 70 %."""
        size = 4
        while 10 * n > 7 * size:
            size *= 2
        if size != len(self._hashes):
            self._shift = 65 - size.bit_length()
            self._hashes, self._entries = _rehash(self._hashes, self._shift, self._entries, size)

    def pop(self, group: int) -> None:
        """Remove a group that is there."""
        _vacate(self._hashes, self._find(group)[0], self._shift, self._entries)
        self._n -= 1

    def _find(self, group: int) -> tuple[int, int, bool]:
        """``(slot, hash, found)``: the group's slot, or the free slot where it would go."""
        h = (group * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF or 1  # 0 marks a free slot
        hashes, entries, events = self._hashes, self._entries, self._events
        mask = len(hashes) - 1
        i = h >> self._shift
        while True:
            s = hashes[i]
            if not s:
                return i, h, False
            if s == h:
                entry = entries[i]
                if entry.__class__ is not _Members:
                    join_key, importance = _GROUP.unpack_from(events[entry])
                    if join_key * 4 + importance == group:
                        return i, h, True
                elif entry.group == group:
                    return i, h, True
            i = (i + 1) & mask


class _Digests:
    """A set of 64-bit digests in one flat array (open addressing, linear probing, deletion by backward shift):
    8 to 16 bytes a digest, where a set of ``bytes`` costs about 100. Digest 0 marks a free slot, so it is a flag."""

    __slots__ = ("_slots", "_shift", "_n", "_zero")

    def __init__(self) -> None:
        self._slots = array("Q", bytes(8 * 1024))
        self._shift = 54  # a slot is the digest's top bits (a digest is uniformly distributed already)
        self._n = 0
        self._zero = False

    def __contains__(self, d: int) -> bool:
        return self._probe(d)[1] if d else self._zero

    def add(self, d: int) -> None:
        if not d:
            self._zero = True
            return
        i, found = self._probe(d)
        if not found:
            self._slots[i] = d
            self._n += 1
            if 2 * self._n > len(self._slots):
                self._grow_for(self._n)

    def fill(self, digests: array) -> None:
        """Add every digest of ``digests`` (a restore): the table sized once, no method call per digest."""
        self._grow_for(self._n + len(digests))  # once, to what many ``add``s would have grown it to
        slots, shift, n = self._slots, self._shift, 0
        mask = len(slots) - 1
        for d in digests:
            if not d:
                self._zero = True
                continue
            i = d >> shift
            while True:
                s = slots[i]
                if s == d:
                    break
                if not s:
                    slots[i] = d
                    n += 1
                    break
                i = (i + 1) & mask
        self._n += n

    def _grow_for(self, n: int) -> None:
        """Grow the table (never shrink it) to the smallest power of two at most half filled by ``n`` digests."""
        size = len(self._slots)
        while 2 * n > size:
            size *= 2
        if size > len(self._slots):
            self._shift = 65 - size.bit_length()
            self._slots = _rehash(self._slots, self._shift, None, size)[0]

    def discard(self, d: int) -> None:
        if not d:
            self._zero = False
            return
        i, found = self._probe(d)
        if found:
            _vacate(self._slots, i, self._shift)
            self._n -= 1

    def _probe(self, d: int) -> tuple[int, bool]:
        """``d``'s slot and whether it is there (if not, the free slot where it would go)."""
        slots = self._slots
        mask = len(slots) - 1
        i = d >> self._shift
        while True:
            s = slots[i]
            if s == d:
                return i, True
            if not s:
                return i, False
            i = (i + 1) & mask



def _rehash(old: array, shift: int, old_entries: list[Any] | None = None,
            size: int = 0) -> tuple[array, list[Any] | None]:
    """A linear-probing table (``old_entries``: its values, beside) of ``size`` slots (default: twice ``old``'s),
    its keys' home slots their top bits (``>> shift``)."""
    size = size or 2 * len(old)
    slots = array("Q", bytes(8 * size))
    entries: list[Any] | None = None if old_entries is None else [None] * size
    mask = size - 1
    for n, s in enumerate(old):
        if s:
            i = s >> shift
            while slots[i]:
                i = (i + 1) & mask
            slots[i] = s
            if entries is not None:
                entries[i] = old_entries[n]
    return slots, entries


def _vacate(slots: array, i: int, shift: int, entries: list[Any] | None = None) -> None:
    """Free slot ``i`` of a linear-probing table (``entries``: its values, beside) whose keys' home slots are
    their top bits (``>> shift``): each later key of the run that could no longer be found from its home slot
    moves back into the gap (deletion by backward shift, no tombstones)."""
    mask = len(slots) - 1
    j = i
    while True:
        j = (j + 1) & mask
        s = slots[j]
        if not s:
            break
        if (j - (s >> shift)) & mask >= (j - i) & mask:
            slots[i] = s
            if entries is not None:
                entries[i] = entries[j]
            i = j
    slots[i] = 0
    if entries is not None:
        entries[i] = None


def _latest(members: EventId | _Members, version: str | None, scope: _Scope) -> EventId | None:
    """The group's latest event (overall, or of ``version``)."""
    if members.__class__ is not _Members:
        return members if version is None or _version(scope.events[members]) == version else None
    if version is None:
        return members.latest
    return None if members.latest_by_version is None else members.latest_by_version.get(version)


def _digest(account_id: str, record_id: str) -> bytes:
    return blake2b(f"{account_id}\x1f{record_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _order(value: bytes) -> tuple[int, int]:
    return _ORDER.unpack_from(value, 16)


_ORDER = struct.Struct("<q20xq")  # END and CREATED of a header, from byte 16
_GROUP = struct.Struct("<q56xB")  # JOIN_KEY and IMPORTANCE of a header


def _version(value: bytes) -> str | None:
    h = _HDR.unpack_from(value)
    n = h[VERSION_LEN]
    return None if not n else value[_HDR_SIZE:_HDR_SIZE + n - 1].decode("utf-8", "surrogatepass")


def _tail(h: tuple[int, ...]) -> int:
    """Where a value's digests begin."""
    return _HDR_SIZE + (h[VERSION_LEN] or 1) - 1 + h[MESSAGE_LEN] + (h[EXTRA_LEN] or 1) - 1


def _due(h: tuple[int, ...], retention: int) -> int:
    return max(h[END], h[ACTUAL]) + retention


class JoinWindows:
    """Joins the records of one partition into ``joined_events`` rows. Pure and single-threaded; never blocks."""

    __slots__ = ("_cfg", "_ret", "_w", "_high", "_scopes", "_live", "_seen", "_buckets", "_bucket_heap", "_soon",
                 "_ticks", "dropped_late")

    def __init__(self, config: JoinConfig = JoinConfig(), watermark: int = 0, states: Iterable[bytes] = ()) -> None:
        """Restore from a watermark (ms) and the bytes of every persisted state, in any order, read once. Raises
        ValueError on corrupt state or on state of an older format."""
        self._cfg = config
        self._ret = config.retention_s * 1000
        self._w = watermark
        self._high = -1  # the largest offset applied to any state: anything at or below it is a replay
        self._scopes: dict[tuple[str, str, str], _Scope] = {}
        self._live = 0
        self._seen = _Digests()  # digests of the records held in chunks, all events together
        self._buckets: dict[int, list[Any]] = {}  # due >> _BUCKET_BITS -> [scope, id, scope, id, ...]
        self._bucket_heap: list[int] = []
        self._soon: list[tuple[int, int, _Scope, str]] = []  # (due, tick, scope, id) of the buckets reached
        self._ticks = 0
        self.dropped_late = 0  # records too late to join (see module docstring); a metric for the shell
        # A restore: a million windows after a kill -9, before the partition is consumed again. ``states`` is read
        # once, as it comes (a worker streams it from ClickHouse, never holding all of it beside the machine); per
        # state one frame read and one slice — the value is what the machine holds — then its indexes.
        frames: dict[bytes, _Scope] = {}  # a scope's frame (its JSON text) -> the scope
        chunks: list[tuple[_Scope, str, int, bytes, int]] = []
        high, ret, unpack, events_seen = self._high, self._ret, _HDR.unpack_from, 0
        digests = array("Q")  # of the records in the values: indexed at the end, in one go
        buckets, heap, reached = self._buckets, self._bucket_heap, self._w >> _BUCKET_BITS
        for blob in states:
            try:
                fmt, kind, n = _FRAME.unpack_from(blob)
                if fmt != _FORMAT:
                    raise _format_error(blob, fmt)
                frame = blob[4:4 + n]
                scope = frames.get(frame) or self._scope_of(frame, frames)
                (m,) = _ID.unpack_from(blob, 4 + n)
                at = 6 + n + m
                event_id = int.from_bytes(blob[6 + n:at], "big") if kind & _UUID_ID else \
                    blob[6 + n:at].decode("utf-8", "surrogatepass")
                value = blob[at:]
                if kind & _UUID_ID:
                    kind = kind & ~_UUID_ID if m == 16 else -1
                if kind == _CHUNK and at <= len(blob):
                    chunks.append((scope, event_id, *_decode_chunk(value)))  # once its event is in
                    continue
                h = unpack(value)
                tail = _HDR_SIZE - 2 + (h[VERSION_LEN] or 1) + h[MESSAGE_LEN] + (h[EXTRA_LEN] or 1)  # _tail(h)
            except (struct.error, UnicodeDecodeError) as exc:  # invalid input: corrupt persisted state
                raise ValueError(f"corrupt join state: {exc}") from None
            if kind != _EVENT or h[IMPORTANCE] > 3 or len(value) < tail or (len(value) - tail) % _SEEN \
                    or at > len(blob) or event_id in scope.events:
                raise ValueError(f"corrupt join state: malformed or repeated state of {scope.key(event_id)}")
            scope.events[event_id] = value
            events_seen += 1
            if h[LAST] > high:
                high = h[LAST]
            for i in range(tail, len(value), _SEEN):
                digests.append(int.from_bytes(value[i:i + 8], "little"))
            due = max(h[END], h[ACTUAL]) + ret  # _schedule, inlined
            bucket = due >> _BUCKET_BITS
            if bucket <= reached:
                self._schedule(scope, event_id, due)
            elif (entries := buckets.get(bucket)) is None:
                buckets[bucket] = [scope, event_id]
                heapq.heappush(heap, bucket)
            else:
                entries += (scope, event_id)
        self._high, self._live = high, self._live + events_seen
        self._seen.fill(digests)
        del digests
        for scope in self._scopes.values():  # all restored: a restore is the machine's first act
            for event_id, value in scope.groups.fill():
                self._admit(scope, event_id, value, unpack(value))  # a group of more than one: nearly all are of one
        chunks.sort(key=_third)  # by chunk number: an event's chunks go in oldest first
        for scope, event_id, n, digests, latest in chunks:
            if event_id not in scope.events:
                raise ValueError(f"corrupt join state: digest chunk {n} of {scope.key(event_id)} without its event")
            if scope.older is None:
                scope.older = {}
            scope.older.setdefault(event_id, []).extend((n, digests, latest))
            for i in range(0, len(digests), _SEEN):
                self._seen.add(int.from_bytes(digests[i:i + 8], "little"))

    def _scope_of(self, frame: bytes, frames: dict[bytes, _Scope]) -> _Scope:
        """The scope of a frame met for the first time in a restore. Raises ValueError on a malformed one."""
        try:
            account, component, type_ = json.loads(frame)
            if not all(isinstance(x, str) for x in (account, component, type_)):
                raise TypeError("not three strings")
        except (TypeError, ValueError) as exc:  # invalid input: corrupt persisted state
            raise ValueError(f"corrupt join state: scope {frame!r}: {exc}") from None
        scope = self._scopes.get((account, component, type_))
        if scope is None:
            scope = self._scopes[(account, component, type_)] = _Scope(account, component, type_)
        frames[frame] = scope
        return scope

    @property
    def watermark(self) -> int:
        return self._w

    def __len__(self) -> int:
        return self._live

    def snapshot(self) -> Iterator[tuple[str, bytes]]:
        """Every live state key with its serialized state (what a full persist would write)."""
        for scope in self._scopes.values():
            for event_id, value in scope.events.items():
                key = scope.key(event_id)
                yield key, _encode(scope, event_id, value)
                older = None if scope.older is None else scope.older.get(event_id)
                for i in range(0, len(older or ()), 3):
                    yield chunk_key(key, older[i]), _encode_chunk(scope, event_id, older[i], older[i + 1])

    def rows(self) -> list[JoinedEventRow]:
        """Current rows of every joined event in memory (row_version 0). For tests and debugging."""
        return [_row(scope, _id_text(event_id), value, _HDR.unpack_from(value), 0)
                for scope in self._scopes.values() for event_id, value in scope.events.items()]

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
            if int.from_bytes(digest, "little") not in self._seen:
                self._join(r, offset, digest, w, changes)
                self._high = offset
        return [changes[k] for k in sorted(changes)]

    # --- internals ---------------------------------------------------------------------------------------------
    def _join(self, r: JoinRecord, offset: int, digest: bytes, w: int,
              changes: dict[str, Change[JoinedEventRow]]) -> None:
        interval = round(min(r.join_interval, MAX_INTERVAL_S) * 1000)
        importance = _IMPORTANCE[r.importance]
        scope = self._scopes.get((r.account_id, r.component_id, r.type_id))
        if scope is None:
            scope = self._scopes[(r.account_id, r.component_id, r.type_id)] = _Scope(
                r.account_id, r.component_id, r.type_id)
        events = scope.events
        target = h = None
        named = None if r.event_id is None else _id_key(r.event_id)
        if named is not None and named in events:
            h = _HDR.unpack_from(events[named])
            if _joinable(h, events[named], r, importance, interval):
                target = named
        if target is None and r.join_interval != 0:
            members = scope.groups.get(r.join_key * 4 + importance)
            latest = None if members is None else _latest(members, r.version, scope)
            if latest is not None:
                h = _HDR.unpack_from(events[latest])
                if _joinable(h, events[latest], r, importance, interval):
                    target = latest
        seen_digest = digest + r.start_date.to_bytes(8, "little", signed=True)
        message = r.message.encode("utf-8", "surrogatepass")
        if target is not None:
            old = events[target]
            at = _HDR_SIZE + (h[VERSION_LEN] or 1) - 1
            version = old[_HDR_SIZE:at]
            tail = at + h[MESSAGE_LEN] + (h[EXTRA_LEN] or 1) - 1
            if r.extras is None:
                extras, extras_len = old[at + h[MESSAGE_LEN]:tail], h[EXTRA_LEN]
            else:
                extras = dumps(r.extras).encode("utf-8", "surrogatepass")
                extras_len = len(extras) + 1
            digests, n = old[tail:], h[CHUNK]
            text = _id_text(target)
            key = event_key(scope.account, scope.component, scope.type, text)
            if len(digests) >= CHUNK_RECORDS * _SEEN:  # full: it moves out, written once under its own key
                digests, n = self._retire(scope, target, key, n, digests, changes), n + 1
            self._drop_old_chunks(scope, target, key, w, changes)
            end = h[END] if h[END] >= r.start_date else r.start_date
            value = b"".join((
                _HDR.pack(h[JOIN_KEY], h[START], end, r.start_date + interval, h[COUNT] + r.count, h[RECORDS] + 1,
                          h[CREATED], offset, n, h[IMPORTANCE], h[VERSION_LEN], len(message), extras_len),
                version, message, extras, digests, seen_digest))
            events[target] = value
            nh = _HDR.unpack_from(value)
            self._admit(scope, target, value, nh)
            due = _due(nh, self._ret)
            if due < _due(h, self._ret):  # expiry moved earlier (a shorter interval): the old entry is too late
                self._schedule(scope, target, due)
            event_id = target
        else:
            event_id = named
            if event_id is None or event_id in events:
                base = event_id = uuid5_int(JOINED_EVENT_NAMESPACE, r.record_id)
                k = 0
                while event_id in events:
                    k += 1
                    event_id = f"{_id_text(base)}#{k}"
            version = b"" if r.version is None else r.version.encode("utf-8", "surrogatepass")
            extras = b"" if r.extras is None else dumps(r.extras).encode("utf-8", "surrogatepass")
            value = b"".join((
                _HDR.pack(r.join_key, r.start_date, r.start_date, r.start_date + interval, r.count, 1, offset, offset,
                          0, importance, 0 if r.version is None else len(version) + 1, len(message),
                          0 if r.extras is None else len(extras) + 1),
                version, message, extras, seen_digest))
            events[event_id] = value
            self._live += 1
            nh = _HDR.unpack_from(value)
            self._admit(scope, event_id, value, nh)
            self._schedule(scope, event_id, _due(nh, self._ret))
            text = _id_text(event_id)
            key = event_key(scope.account, scope.component, scope.type, text)
        self._seen.add(int.from_bytes(digest, "little"))
        changes[key] = Change(key, _row(scope, text, value, nh, offset), _encode(scope, event_id, value))

    def _retire(self, scope: _Scope, event_id: EventId, key: str, n: int, digests: bytes,
                changes: dict[str, Change[JoinedEventRow]]) -> bytes:
        """Move an event's full last chunk out of its value; returns the digests its value keeps (none)."""
        if scope.older is None:
            scope.older = {}
        starts = _unpacker.unpack(digests)[1::2]
        scope.older.setdefault(event_id, []).extend((n, digests, max(starts)))
        changes[chunk_key(key, n)] = Change(chunk_key(key, n), None, _encode_chunk(scope, event_id, n, digests))
        return b""

    def _drop_old_chunks(self, scope: _Scope, event_id: EventId, key: str, w: int,
                         changes: dict[str, Change[JoinedEventRow]]) -> None:
        """Drop an event's oldest full chunks once all their records are too late (a chunk kept a little longer
        because of a later one costs nothing)."""
        older = None if scope.older is None else scope.older.get(event_id)
        if older is None:
            return
        i = 0
        while i < len(older) and older[i + 2] + self._ret <= w:
            self._forget(older[i + 1])
            changes[chunk_key(key, older[i])] = Change(chunk_key(key, older[i]), None, None)
            i += 3
        if i == len(older):
            del scope.older[event_id]
        elif i:
            del older[:i]

    def _forget(self, digests: bytes) -> None:
        for i in range(0, len(digests), _SEEN):
            self._seen.discard(int.from_bytes(digests[i:i + 8], "little"))

    def _admit(self, scope: _Scope, event_id: EventId, value: bytes, h: tuple[int, ...]) -> None:
        """Index a new or extended event in its group (its end_time only grows, so it can only become latest)."""
        group = h[JOIN_KEY] * 4 + h[IMPORTANCE]
        members = scope.groups.setdefault(group, event_id)  # a new group: of one
        events = scope.events
        if members.__class__ is not _Members:
            if members == event_id:
                return  # the only one, so the latest
            members = _Members(group, members, _version(events[members]))
            scope.groups.put(group, members)
        members.ids[event_id] = None
        order = _order(value)
        if _order(events[members.latest]) <= order:
            members.latest = event_id
        version = _version(value)
        if version is not None:
            by_version = members.latest_by_version
            if by_version is None:
                by_version = members.latest_by_version = {}
            current = by_version.get(version)
            if current is None or _order(events[current]) <= order:
                by_version[version] = event_id

    def _evict(self, scope: _Scope, event_id: EventId, changes: dict[str, Change[JoinedEventRow]]) -> None:
        events = scope.events
        value = events[event_id]
        h = _HDR.unpack_from(value)
        key = scope.key(event_id)
        changes[key] = Change(key, None, None)
        self._forget(value[_tail(h):])
        older = None if scope.older is None else scope.older.pop(event_id, None)
        for i in range(0, len(older or ()), 3):
            self._forget(older[i + 1])
            changes[chunk_key(key, older[i])] = Change(chunk_key(key, older[i]), None, None)
        self._leave_group(scope, event_id, value, h[JOIN_KEY] * 4 + h[IMPORTANCE])
        del events[event_id]
        self._live -= 1
        if not events:
            del self._scopes[(scope.account, scope.component, scope.type)]

    def _leave_group(self, scope: _Scope, event_id: EventId, value: bytes, group: int) -> None:
        """Take an event out of its group's index (while it is still among the scope's events)."""
        events = scope.events
        members = scope.groups.get(group)
        if members.__class__ is not _Members:  # it was the only one
            scope.groups.pop(group)
            return
        del members.ids[event_id]
        if len(members.ids) == 1:  # a group of one again: its id alone
            scope.groups.put(group, next(iter(members.ids)))
            return
        if members.latest == event_id:
            members.latest = max(members.ids, key=lambda k: _order(events[k]))
        version = _version(value)
        by_version = members.latest_by_version
        if version is not None and by_version is not None and by_version.get(version) == event_id:
            same = [k for k in members.ids if _version(events[k]) == version]
            if same:
                by_version[version] = max(same, key=lambda k: _order(events[k]))
            else:
                del by_version[version]

    def _schedule(self, scope: _Scope, event_id: EventId, due: int) -> None:
        bucket = due >> _BUCKET_BITS
        if bucket <= self._w >> _BUCKET_BITS:  # reached: exactly, in the heap
            self._ticks += 1
            heapq.heappush(self._soon, (due, self._ticks, scope, event_id))
            return
        entries = self._buckets.get(bucket)
        if entries is None:
            self._buckets[bucket] = [scope, event_id]
            heapq.heappush(self._bucket_heap, bucket)
        else:
            entries += (scope, event_id)

    def _fire(self, w: int, changes: dict[str, Change[JoinedEventRow]]) -> None:
        """Evict every event due at ``w``. An entry may be stale (the event extended, gone, or its id reused):
        the event's own fields decide."""
        ret, buckets, heap, soon = self._ret, self._buckets, self._bucket_heap, self._soon
        while heap and heap[0] <= w >> _BUCKET_BITS:
            entries = buckets.pop(heapq.heappop(heap))
            for i in range(0, len(entries), 2):
                scope, event_id = entries[i], entries[i + 1]
                value = scope.events.get(event_id)
                if value is not None:
                    self._schedule(scope, event_id, _due(_HDR.unpack_from(value), ret))
        while soon and soon[0][0] <= w:
            _, _, scope, event_id = heapq.heappop(soon)
            value = scope.events.get(event_id)
            if value is None:
                continue
            due = _due(_HDR.unpack_from(value), ret)
            if due <= w:
                self._evict(scope, event_id, changes)
            else:  # extended since it was scheduled
                self._schedule(scope, event_id, due)


def _joinable(h: tuple[int, ...], value: bytes, r: JoinRecord, importance: int, interval: int) -> bool:
    if h[IMPORTANCE] != importance or h[JOIN_KEY] != r.join_key:
        return False
    if h[VERSION_LEN] and r.version is not None and _version(value) != r.version:
        return False
    return r.join_interval != 0 and h[END] + 1000 + interval >= r.start_date


def _row(scope: _Scope, event_text: str, value: bytes, h: tuple[int, ...], version: int) -> JoinedEventRow:
    at = _HDR_SIZE + (h[VERSION_LEN] or 1) - 1
    message_end = at + h[MESSAGE_LEN]
    return JoinedEventRow(
        scope.account, event_text, scope.component, scope.type, h[JOIN_KEY], IMPORTANCES[h[IMPORTANCE]], h[START],
        h[END], h[ACTUAL], h[COUNT], value[at:message_end].decode("utf-8", "surrogatepass"),
        value[_HDR_SIZE:at].decode("utf-8", "surrogatepass") if h[VERSION_LEN] else None, h[RECORDS], version,
        json.loads(value[message_end:message_end + h[EXTRA_LEN] - 1]) if h[EXTRA_LEN] else None)


def _third(item: tuple[Any, ...]) -> Any:
    return item[2]


_unpacker = struct.Struct("<" + "8sq" * CHUNK_RECORDS)  # a full chunk: digest, start_date, ...


def _encode(scope: _Scope, event_id: EventId, value: bytes) -> bytes:
    if event_id.__class__ is str:
        kind, raw = _EVENT, event_id.encode("utf-8", "surrogatepass")
    else:
        kind, raw = _EVENT | _UUID_ID, event_id.to_bytes(16, "big")
    return b"".join((_FRAME.pack(_FORMAT, kind, len(scope.frame)), scope.frame, _ID.pack(len(raw)), raw, value))


def _encode_chunk(scope: _Scope, event_id: EventId, n: int, digests: bytes) -> bytes:
    if event_id.__class__ is str:
        kind, raw = _CHUNK, event_id.encode("utf-8", "surrogatepass")
    else:
        kind, raw = _CHUNK | _UUID_ID, event_id.to_bytes(16, "big")
    return b"".join((_FRAME.pack(_FORMAT, kind, len(scope.frame)), scope.frame, _ID.pack(len(raw)), raw,
                     _CHUNK_NO.pack(n), digests))


def _format_error(blob: bytes, fmt: int) -> ValueError:
    if blob[:1] == b"{":
        return ValueError(
            "consumer_state holds joins state of format 1 (JSON, written before issue 16's second round), which "
            "this version does not read: run the previous version until no joined event is open, or delete the "
            "joins group's rows from consumer_state and replay its topic from the beginning")
    return ValueError(f"corrupt join state: unknown format {fmt}")


def _decode_chunk(rest: bytes) -> tuple[int, bytes, int]:
    """``(n, digests, largest start_date)`` of a chunk state's part after its frame. Raises ValueError."""
    try:
        (n,) = _CHUNK_NO.unpack_from(rest)
    except struct.error as exc:
        raise ValueError(f"corrupt join state: {exc}") from None
    digests = rest[_CHUNK_NO.size:]
    if len(digests) != CHUNK_RECORDS * _SEEN:
        raise ValueError("corrupt join state: malformed digest chunk")
    return n, digests, max(_unpacker.unpack(digests)[1::2])
