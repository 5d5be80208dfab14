"""Session pairing (SPEC §3.1) — a pure state machine: no I/O, no clock, stdlib only.

One ``SessionPairer`` serves one Kafka input partition. Time is event time only: the machine's watermark is the
largest ``timestamp`` it has seen in its partition. ``process(event, offset)`` returns the ``Change``s the event
caused: the new ``sessions`` row (if the visible row changed) and the state to persist for the key.

Semantics (the final row of a key depends only on the *set* of its events, given the watermark passes the same
points — never on arrival order, batch boundaries or duplicates):

* Pair key ``(account_id, session, type)``; state key ``state_key(...)`` (JSON text of the three, injective).
* ``start_time`` = the smallest START timestamp, ``end_time`` = the largest END timestamp (so a duplicate
  START/END, whatever its event_id, changes nothing); ``update_count`` = number of *distinct* UPDATE event_ids.
* Status, with ``W`` the watermark, ``T`` = ``session_timeout_s``, ``G`` = ``orphan_grace_s``:
  - START and END seen: ``closed`` if ``end − start < T``, else ``timed_out`` (an END at or after the timeout
    does not close the session, in whatever order the two arrive; its ``end_time`` and ``duration_s`` are shown).
    ``duration_s = end − start`` may be negative when the client's END precedes its START.
  - START only: ``open`` while ``W < start + T``, then ``timed_out``.
  - no START: invisible (no row) while ``W < first + G`` (``first`` = smallest timestamp of the key's events),
    then ``orphan`` (``start_time``/``duration_s`` null, ``end_time`` = END's time if any). A START that arrives
    later turns an orphan into open/closed/timed_out like any other START.
* Exactly once under replay: every key remembers the offset of the last event that changed it; an event with an
  offset ≤ that is ignored. An event that changes nothing (duplicate) changes no state and yields no ``Change``.
* ``row_version`` = the offset of the event being processed: the event itself, or the event whose timestamp moved
  the watermark past a timeout/orphan deadline.
* Retention (bounded memory): ``R = T + G``. A key is evicted once ``W ≥ last + R`` (``last`` = largest
  timestamp of its events); by then it is always terminal. Its ``Change`` has ``state=None`` and a
  ``tombstone``: the evicted state, persisted beside the live states (``consumer_state``, ``deleted = 1``) so that
  memory holds only live keys while what the row knew is never lost. Any event with ``timestamp + R ≤ W`` is too
  late: it is dropped (``dropped_late`` counts it; it is still in the ``events`` table) — had it come in time,
  its session would long be decided; this keeps replays and duplicates of an evicted key's events from
  resurrecting it. An event for an evicted key that is *not* that old (SPEC §3.1: a session whose START was seen
  is never an orphan, however long after it the next event comes):
  - a START starts a new session (a session id reused days later): its row replaces the old one;
  - an UPDATE or END meets the key's tombstone. If the old session had ended (END seen), or the event lies
    ``late_horizon_s`` (``H``, default 7 days) or more after the key's last event, it is ignored for pairing
    (counted in ``dropped_late``; the row keeps what it knew). Otherwise the tombstone comes back to memory and
    the event applies as if the key had never left: a START-only session that timed out stays ``timed_out``
    with its ``start_time`` and shows the late END's ``end_time`` and ``duration_s``; an orphan keeps counting.
  A tombstone costs no memory (it lives in ClickHouse). Once the watermark is ``H + R`` past the key's last
  event (``forgettable``), every event that is not too late lies beyond ``H``: all the tombstone still says is
  "this key was seen", and the key's row in ``sessions`` says that too. Compaction then drops it, and the shell
  answers a look-up that finds no tombstone from the output table: a key with a row written at or below the
  compaction floor is handed over as ``forgotten`` and its events are ignored like any beyond ``H`` (see
  Compaction in state.py) — so ``consumer_state`` does not keep a row per session ever evicted.
  Deadlines are applied *before* the event that moves the watermark, so it makes no difference whether this
  event or another one moved it. Shuffles in which no event arrives after the watermark passed its own
  timestamp + ``G``, for keys whose events span less than ``T``, never hit any of these cases.
* Recall protocol (the shell's I/O, kept out of this module): before ``process``-ing an UPDATE/END whose key
  is not in memory, the caller looks the key's tombstone up (or learns that it was forgotten) and hands it over
  with ``recall`` —
  ``unknown_keys(events)`` lists the keys that need it (batched per poll). Keys evicted here since the last
  ``persisted()`` are remembered in memory until then, since their tombstones are not in ClickHouse yet.
  ``process`` raises ``RecallRequired`` for a key that was not looked up: a bug in the caller, never a guess.

* ``len(machine)`` counts every key in memory: open and pending sessions, and finished ones awaiting eviction.
* The watermark is the partition's largest timestamp: one event stamped far in the future times out every open
  session of its partition and makes the others' events late, so timestamps must be sane before they get here.

Memory (issue 16: the worker's budget is 300 MB at 1 M open sessions): a key is one ``str`` → ``bytes`` dict
entry (a 33-byte header with 32-bit times plus 8 bytes per distinct UPDATE: a START-only value is 66 bytes, one
pymalloc class below the 82 of 64-bit times) and one slot in a timer bucket. The persisted state keeps 64-bit
times; the conversion happens at the edges (``_encode``/``_decode``). 1 000 000 open sessions: 225 MB RSS in all
(bench/memory.py; 241 MB with 64-bit times).
"""

from __future__ import annotations

import heapq
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from hashlib import blake2b
from typing import Generic, TypeVar

from .keys import split_key, strings_key

__all__ = ["Change", "RecallRequired", "SessionConfig", "SessionEvent", "SessionPairer", "SessionRow",
           "state_key"]

START, UPDATE, END = "START", "UPDATE", "END"
OPEN, CLOSED, TIMED_OUT, ORPHAN = "open", "closed", "timed_out", "orphan"

RowT = TypeVar("RowT")


@dataclass(frozen=True, slots=True)
class Change(Generic[RowT]):
    """One state entry touched by ``process``: the row to write (or None) and the state to persist (None = the
    key left memory; ``tombstone``, when given, is what to keep of it for a later ``recall``)."""

    key: str
    row: RowT | None
    state: bytes | None
    tombstone: bytes | None = None


class RecallRequired(LookupError):
    """Bug in the caller: an UPDATE/END for a key not in memory was processed without looking up its tombstone."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    session_timeout_s: int = 86400
    orphan_grace_s: int = 3600
    late_horizon_s: int = 7 * 86400  # how long after a key's last event a late UPDATE/END still joins it

    def __post_init__(self) -> None:
        if self.session_timeout_s <= 0 or self.orphan_grace_s <= 0 or self.late_horizon_s <= 0:
            raise ValueError("session_timeout_s, orphan_grace_s and late_horizon_s must be positive")

    @property
    def retention_s(self) -> int:
        """How long (event time) a key stays in memory after its last event; older events for unknown keys drop."""
        return self.session_timeout_s + self.orphan_grace_s


@dataclass(frozen=True, slots=True)
class SessionEvent:
    account_id: str
    event_id: str
    action: str  # START | UPDATE | END
    type: str
    timestamp: int  # unix seconds, 0 .. 2**32 - 1 (the pairer holds uint32 times)
    session: str

    def __post_init__(self) -> None:
        if self.action not in (START, UPDATE, END):
            raise ValueError(f"action: {self.action!r} is not START, UPDATE or END")
        if not 0 <= self.timestamp <= _MAX_TS:  # the pairer holds times as uint32
            raise ValueError(f"timestamp: must be 0 .. {_MAX_TS} (1970-01-01 .. 2106-02-07)")


@dataclass(frozen=True, slots=True)
class SessionRow:
    account_id: str
    type: str
    session: str
    status: str
    start_time: int | None
    end_time: int | None
    duration_s: int | None
    update_count: int
    row_version: int


def state_key(account_id: str, session: str, type_: str) -> str:
    """The persisted key of a pair: JSON text, so distinct pairs never share a key."""
    return strings_key(account_id, session, type_)


# In memory a key maps to HEADER + update digests (8 bytes per distinct UPDATE event_id).
# Header: last applied offset, start, end, first ts, last ts, scheduled timer deadline, flags. Times are uint32
# (SessionEvent enforces it) to save 16 bytes a key; the deadline is not a time (last + retention, _UNSCHEDULED).
# The scheduled deadline is bookkeeping only (recomputed on restore); everything else is the state.
_HDR = struct.Struct("<qIIIIqB")
_HDR_SIZE = _HDR.size
# Persisted, the header has the 64-bit layout it always had (deadline zeroed): the bytes in consumer_state stay.
_DISK = struct.Struct("<qqqqqqB")
_DISK_SIZE = _DISK.size
_MAX_TS = 2**32 - 1
_HAS_START, _HAS_END = 1, 2
_FORMAT = 1  # first byte of serialized state
_KEYLEN = struct.Struct("<BI")

_Visible = tuple[str, int | None, int | None, int | None, int] | None  # status, start, end, duration, updates
_IGNORED = b"ignored"  # _recall's answer for an event that must not join its evicted key
_UNSCHEDULED = 2**63 - 1


def _digest(event_id: str) -> bytes:
    return blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _contains(blob: bytes, digest: bytes) -> bool:
    i = blob.find(digest, _HDR_SIZE)
    while i != -1:
        if (i - _HDR_SIZE) % 8 == 0:
            return True
        i = blob.find(digest, i + 1)
    return False


class SessionPairer:
    """Pairs START/UPDATE/END of one partition into ``sessions`` rows. Pure and single-threaded; never blocks."""

    __slots__ = ("_cfg", "_w", "_state", "_buckets", "_heap", "_recalled", "dropped_late")

    def __init__(self, config: SessionConfig = SessionConfig(), watermark: int = 0,
                 states: Iterable[bytes] = ()) -> None:
        """Restore from a watermark and the bytes of every persisted state. Raises ValueError on corrupt state."""
        self._cfg = config
        self._w = watermark
        self._state: dict[str, bytes] = {}
        self._buckets: dict[int, list[str]] = {}
        self._heap: list[int] = []
        # key -> tombstone value (None: looked up, none exists) for keys not in memory; see the recall protocol
        self._recalled: dict[str, bytes | None] = {}
        self.dropped_late = 0  # events too late for pairing (see module docstring); a metric for the shell
        # restore: a million keys, written by _encode — _decode, _deadline and _schedule inlined (a call per key
        # costs more than the checks), the heap made at the end
        state, buckets, heap = self._state, self._buckets, self._heap
        frame, unpack, pack = _KEYLEN.unpack_from, _DISK.unpack_from, _HDR.pack
        retention, grace, timeout = config.retention_s, config.orphan_grace_s, config.session_timeout_s
        for blob in states:
            try:
                fmt, n = frame(blob)
                at = _KEYLEN.size + n  # where the header starts
                if fmt != _FORMAT or len(blob) < at + _DISK_SIZE or (len(blob) - at - _DISK_SIZE) % 8:
                    _decode(blob)  # raises the precise ValueError
                key = blob[_KEYLEN.size:at].decode("utf-8", "surrogatepass")
                offset, start, end, first, last, _, flags = unpack(blob, at)
                evict = last + retention  # due as _deadline has it: <= watermark only if already evictable
                t = first + grace if not flags & _HAS_START else start + timeout if not flags & _HAS_END else evict
                due = t if watermark < t < evict else evict
                state[key] = pack(offset, start, end, first, last, due, flags) + blob[at + _DISK_SIZE:]
            except (struct.error, UnicodeDecodeError) as exc:  # a time beyond uint32, bad UTF-8
                raise ValueError(f"corrupt session state: {exc}") from exc
            bucket = buckets.get(due)
            if bucket is None:
                buckets[due] = [key]
                heap.append(due)
            else:
                bucket.append(key)
        heapq.heapify(heap)

    @property
    def watermark(self) -> int:
        return self._w

    def __len__(self) -> int:
        return len(self._state)

    def snapshot(self) -> Iterator[tuple[str, bytes]]:
        """Every live key with its serialized state (what a full persist would write)."""
        for key, value in self._state.items():
            yield key, _encode(key, value)

    def row(self, key: str) -> SessionRow | None:
        """The current visible row of a key in memory (row_version 0), or None. For tests and debugging."""
        value = self._state.get(key)
        visible = None if value is None else self._visible(value, self._w)
        return None if visible is None else _make_row(key, visible, 0)

    # --- recall of evicted keys (the caller does the look-up) ---------------------------------------------------
    def unknown_keys(self, events: Iterable[SessionEvent]) -> list[str]:
        """The state keys whose tombstone must be looked up before ``events`` (the next ones to ``process``, in
        order) can be processed, once each. A key that a START among them brings into memory first needs none,
        so the usual session — START, UPDATEs and END in one poll — costs no look-up."""
        keys: dict[str, None] = {}
        state, recalled, retention = self._state, self._recalled, self._cfg.retention_s
        started: set[str] = set()
        w = self._w  # the watermark each event will meet, as ``process`` moves it
        for e in events:
            ts = e.timestamp
            late = ts + retention <= w  # dropped by ``process`` without a look-up
            if ts > w:
                w = ts
            if late:
                continue
            key = state_key(e.account_id, e.session, e.type)
            if e.action == START:
                started.add(key)
            elif key not in state and key not in recalled and key not in started:
                keys[key] = None
        return list(keys)

    def recall(self, keys: Iterable[str], tombstones: Iterable[bytes], forgotten: Iterable[str] = ()) -> None:
        """Hand over the look-up of ``keys``: the tombstones found (``Change.tombstone`` bytes), absent for keys
        that have none; ``forgotten``: keys among them whose tombstone was dropped once ``forgettable`` (their
        UPDATEs and ENDs are ignored). Raises ValueError on a corrupt tombstone."""
        for key in keys:
            self._recalled.setdefault(key, None)
        for key in forgotten:
            if key not in self._state:
                self._recalled[key] = _IGNORED
        for blob in tombstones:
            key, value = _decode(blob)
            if key not in self._state:
                self._recalled[key] = value

    def forgettable(self, tombstone: bytes) -> bool:
        """Whether ``tombstone`` (``Change.tombstone`` bytes) may be dropped now: every event of its key that is
        not too late for this watermark lies ``late_horizon_s`` or more after the key's last event, so it is
        ignored whether it meets the tombstone or is told the key was ``forgotten``. Raises ValueError on a
        corrupt tombstone."""
        _, value = _decode(tombstone, check_key=False)
        last = _HDR.unpack_from(value)[4]
        return last + self._cfg.late_horizon_s + self._cfg.retention_s <= self._w

    def persisted(self) -> None:
        """Every ``Change`` returned so far is durable: tombstones can be looked up where they were written."""
        self._recalled.clear()

    # --- the one entry point -----------------------------------------------------------------------------------
    def process(self, event: SessionEvent, offset: int) -> list[Change[SessionRow]]:
        """Apply every deadline the event's timestamp passes, then the event (Kafka ``offset``); return what changed.

        One ``Change`` per key touched, sorted by key. Never blocks; raises nothing for a well-formed event.
        """
        cfg = self._cfg
        w0 = self._w
        ts = event.timestamp
        w = ts if ts > w0 else w0
        self._w = w
        key = state_key(event.account_id, event.session, event.type)
        before: dict[str, _Visible] = {}
        dirty: set[str] = set()
        evicted: dict[str, bytes] = {}
        # Deadlines first, then the event: whether this event or another one moved the watermark to `w` must not
        # matter, so the event always meets the state as of `w` (possibly its key just evicted).
        self._fire(w0, w, before, evicted)

        value = self._state.get(key)
        if value is None and event.action != START and ts + cfg.retention_s > w0:
            value = self._recall(key, ts)
        if value is _IGNORED:
            self.dropped_late += 1
        elif value is not None and offset <= _HDR.unpack_from(value)[0]:
            pass  # replay of an event already applied
        elif ts + cfg.retention_s <= w0:
            self.dropped_late += 1
        elif value is None:
            flags = (_HAS_START if event.action == START else 0) | (_HAS_END if event.action == END else 0)
            digests = _digest(event.event_id) if event.action == UPDATE else b""
            due = self._deadline(ts, ts, ts, ts, flags, w)
            self._state[key] = _HDR.pack(offset, ts, ts, ts, ts, due, flags) + digests
            self._schedule(key, due)
            before.setdefault(key, None)
            dirty.add(key)
        else:
            new = _apply(value, event, offset)
            if new is not None and key not in self._state:  # recalled: back in memory since the event changed it
                del self._recalled[key]
            if new is not None:
                before.setdefault(key, self._visible(value, w0))
                _, start, end, first, last, due, flags = _HDR.unpack_from(new)
                nd = self._deadline(start, end, first, last, flags, w)
                if nd < due:  # deadline moved earlier: schedule it (the later entry goes stale)
                    new = _HDR.pack(offset, start, end, first, last, nd, flags) + new[_HDR_SIZE:]
                    self._schedule(key, nd)
                self._state[key] = new
                dirty.add(key)

        changes: list[Change[SessionRow]] = []
        for k, old in before.items():
            shown: _Visible = None  # the row to write, if the visible row changed
            gone = evicted.get(k)
            if gone is not None:  # its final row change (if any) goes out with the delete or the new state
                final = self._visible(gone, w)
                if final != old:
                    shown = old = final
            value = self._state.get(k)
            if value is None:
                changes.append(Change(k, _make_row(k, shown, offset) if shown else None, None,
                                      _encode(k, evicted[k]) if k in evicted else None))
                continue
            current = self._visible(value, w)
            if current is not None and current != old:
                shown = current
            if shown is not None or k in dirty:
                changes.append(Change(k, _make_row(k, shown, offset) if shown else None, _encode(k, value)))
        if len(changes) > 1:
            changes.sort(key=_by_key)  # deterministic order whatever the timer buckets' history
        return changes

    # --- internals ---------------------------------------------------------------------------------------------
    def _fire(self, w0: int, w: int, before: dict[str, _Visible], evicted: dict[str, bytes]) -> None:
        heap, buckets, state = self._heap, self._buckets, self._state
        retention = self._cfg.retention_s
        while heap and heap[0] <= w:
            due = heapq.heappop(heap)
            for k in buckets.pop(due):
                value = state.get(k)
                if value is None:
                    continue
                off, start, end, first, last, sched, flags = _HDR.unpack_from(value)
                if sched != due:
                    continue  # stale entry: the key was rescheduled earlier
                if k not in before:
                    before[k] = self._visible(value, w0)
                if w >= last + retention:
                    del state[k]
                    evicted[k] = self._recalled[k] = value
                    continue
                nd = self._deadline(start, end, first, last, flags, w)
                state[k] = _HDR.pack(off, start, end, first, last, nd, flags) + value[_HDR_SIZE:]
                self._schedule(k, nd)

    def _recall(self, key: str, ts: int) -> bytes | None:
        """The tombstone of an evicted key for an UPDATE/END at ``ts`` (None: no such key, ``_IGNORED``: the event
        cannot join it). Raises RecallRequired when the key was never looked up."""
        try:
            value = self._recalled[key]
        except KeyError:
            raise RecallRequired(f"{key}: not in memory and not looked up; call recall() first") from None
        if value is None or value is _IGNORED:
            return value
        offset, start, end, first, last, _, flags = _HDR.unpack_from(value)
        if flags & _HAS_END or ts >= last + self._cfg.late_horizon_s:
            return _IGNORED
        # unscheduled: if the event changes the key, ``process`` schedules its next deadline like any other's
        return _HDR.pack(offset, start, end, first, last, _UNSCHEDULED, flags) + value[_HDR_SIZE:]

    def _schedule(self, key: str, due: int) -> None:
        bucket = self._buckets.get(due)
        if bucket is None:
            self._buckets[due] = [key]
            heapq.heappush(self._heap, due)
        else:
            bucket.append(key)

    def _deadline(self, start: int, end: int, first: int, last: int, flags: int, w: int) -> int:
        """The next watermark at which the key's row changes or it is evicted (> w, unless already evictable)."""
        evict = last + self._cfg.retention_s
        if not flags & _HAS_START:
            t = first + self._cfg.orphan_grace_s
        elif not flags & _HAS_END:
            t = start + self._cfg.session_timeout_s
        else:
            return evict
        return t if w < t < evict else evict

    def _visible(self, value: bytes, w: int) -> _Visible:
        _, start, end, first, _, _, flags = _HDR.unpack_from(value)
        updates = (len(value) - _HDR_SIZE) // 8
        cfg = self._cfg
        has_end = flags & _HAS_END
        if not flags & _HAS_START:
            if w < first + cfg.orphan_grace_s:
                return None
            return (ORPHAN, None, end if has_end else None, None, updates)
        if has_end:
            status = CLOSED if end - start < cfg.session_timeout_s else TIMED_OUT
            return (status, start, end, end - start, updates)
        status = OPEN if w < start + cfg.session_timeout_s else TIMED_OUT
        return (status, start, None, None, updates)


def _by_key(change: Change[SessionRow]) -> str:
    return change.key


def _apply(value: bytes, event: SessionEvent, offset: int) -> bytes | None:
    """The key's new value with ``event`` applied, or None when it changes nothing (replay or duplicate)."""
    last_offset, start, end, first, last, due, flags = _HDR.unpack_from(value)
    if offset <= last_offset:
        return None
    ts = event.timestamp
    digests = value[_HDR_SIZE:]
    changed = False
    if event.action == START:
        if not flags & _HAS_START or ts < start:
            start, flags, changed = ts, flags | _HAS_START, True
    elif event.action == END:
        if not flags & _HAS_END or ts > end:
            end, flags, changed = ts, flags | _HAS_END, True
    else:
        digest = _digest(event.event_id)
        if not _contains(value, digest):
            digests += digest
            changed = True
    if ts < first:
        first, changed = ts, True
    if ts > last:
        last, changed = ts, True
    if not changed:
        return None
    return _HDR.pack(offset, start, end, first, last, due, flags) + digests


def _make_row(key: str, visible: tuple[str, int | None, int | None, int | None, int], version: int) -> SessionRow:
    account_id, session, type_ = split_key(key)
    status, start, end, duration, updates = visible
    return SessionRow(account_id, type_, session, status, start, end, duration, updates, version)


def _encode(key: str, value: bytes) -> bytes:
    """Serialized state: format byte, key length, key (UTF-8), the header in its persisted 64-bit layout
    (deadline zeroed: it is recomputed), digests."""
    raw = key.encode("utf-8", "surrogatepass")
    offset, start, end, first, last, _, flags = _HDR.unpack_from(value)
    return b"".join((_KEYLEN.pack(_FORMAT, len(raw)), raw, _DISK.pack(offset, start, end, first, last, 0, flags),
                     value[_HDR_SIZE:]))


def _decode(blob: bytes, check_key: bool = True) -> tuple[str, bytes]:
    """``(key, value)`` of a serialized state, the value as held in memory (32-bit times; deadline 0).
    ``check_key=False`` skips parsing the key's JSON (the most of the cost; a restore of 1 M keys spends
    seconds on it): for states this module wrote itself, whose framing is still checked."""
    try:
        fmt, n = _KEYLEN.unpack_from(blob)
        if fmt != _FORMAT:
            raise ValueError(f"unknown session state format {fmt}")
        start = _KEYLEN.size
        key = bytes(blob[start:start + n]).decode("utf-8", "surrogatepass")
        value = bytes(blob[start + n:])
        if len(value) < _DISK_SIZE or (len(value) - _DISK_SIZE) % 8:
            raise ValueError("truncated session state")
        if check_key:
            fields = json.loads(key)
            if not (isinstance(fields, list) and len(fields) == 3 and all(isinstance(f, str) for f in fields)):
                raise ValueError("session state key is not [account_id, session, type]")
        offset, begin, end, first, last, _, flags = _DISK.unpack_from(value)
        value = _HDR.pack(offset, begin, end, first, last, 0, flags) + value[_DISK_SIZE:]
    except (struct.error, UnicodeDecodeError) as exc:  # invalid input: corrupt persisted state (or a time
        raise ValueError(f"corrupt session state: {exc}") from exc  # beyond uint32, which this never writes)
    return key, value
