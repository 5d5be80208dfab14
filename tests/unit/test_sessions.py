"""Session pairing (SPEC §3.1): a table of cases per rule, then properties checked with hypothesis."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.sessions import Change, SessionConfig, SessionEvent, SessionPairer, SessionRow, state_key

T, G = 100, 20  # small timeout and grace keep the numbers readable
CFG = SessionConfig(session_timeout_s=T, orphan_grace_s=G)
R = T + G
KEY = state_key("acc", "sess-0001", "APPSTART")


def ev(action: str, ts: int, event_id: str | None = None, session: str = "sess-0001") -> SessionEvent:
    return SessionEvent("acc", event_id or f"{action}@{ts}", action, "APPSTART", ts, session)


def feed(machine: SessionPairer, event: SessionEvent, offset: int,
         tombstones: dict[str, bytes] | None = None) -> list[Change]:
    """``process`` as the worker does it: look up the tombstones the machine asks for first (in ``tombstones``,
    the latest persisted tombstone per key; None: nothing persisted), and keep the new ones there."""
    keys = machine.unknown_keys([event])
    if keys:
        machine.recall(keys, [tombstones[k] for k in keys if tombstones and k in tombstones])
    changes = machine.process(event, offset)
    if tombstones is not None:
        for c in changes:
            if c.tombstone is not None:
                tombstones[c.key] = c.tombstone
            elif c.state is not None:
                tombstones.pop(c.key, None)
    return changes


def run(events: list[SessionEvent], machine: SessionPairer | None = None,
        first_offset: int = 0) -> tuple[SessionPairer, list[Change]]:
    machine = SessionPairer(CFG) if machine is None else machine
    changes: list[Change] = []
    for offset, e in enumerate(events, first_offset):
        changes.extend(feed(machine, e, offset))
    return machine, changes


def final_rows(changes: list[Change], with_version: bool = False) -> dict[str, tuple]:
    """What ``sessions_final`` shows: the last row written per key."""
    rows: dict[str, tuple] = {}
    for c in changes:
        if c.row is not None:
            row = c.row if with_version else replace(c.row, row_version=0)
            rows[c.key] = row
    return rows


def last_row(changes: list[Change]) -> SessionRow:
    return [c.row for c in changes if c.row is not None][-1]


def summary(row: SessionRow) -> tuple:
    return row.status, row.start_time, row.end_time, row.duration_s, row.update_count


# --- pairing ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("events", "expected"), [
    pytest.param([ev("START", 10)], ("open", 10, None, None, 0), id="open-visible-at-once"),
    pytest.param([ev("START", 10), ev("UPDATE", 20), ev("UPDATE", 30), ev("END", 50)],
                 ("closed", 10, 50, 40, 2), id="in-order"),
    pytest.param([ev("END", 50), ev("UPDATE", 20), ev("START", 10)], ("closed", 10, 50, 40, 1), id="reversed"),
    pytest.param([ev("UPDATE", 20), ev("END", 50), ev("START", 10)], ("closed", 10, 50, 40, 1), id="start-last"),
    pytest.param([ev("START", 10), ev("UPDATE", 20, "u1"), ev("UPDATE", 25, "u1"), ev("UPDATE", 30, "u2")],
                 ("open", 10, None, None, 2), id="update-counted-once-per-event-id"),
    pytest.param([ev("START", 10), ev("START", 5, "other-start")], ("open", 5, None, None, 0),
                 id="earliest-start-wins"),
    pytest.param([ev("START", 10), ev("END", 40), ev("END", 60, "other-end")], ("closed", 10, 60, 50, 0),
                 id="latest-end-wins"),
    pytest.param([ev("START", 50), ev("END", 45)], ("closed", 50, 45, -5, 0), id="end-before-start-negative"),
    pytest.param([ev("START", 10), ev("END", 10 + T - 1)], ("closed", 10, 10 + T - 1, T - 1, 0),
                 id="end-just-within-timeout"),
])
def test_pairing(events: list[SessionEvent], expected: tuple) -> None:
    _, changes = run(events)
    assert summary(last_row(changes)) == expected
    assert all(c.key == KEY for c in changes)


def test_row_carries_the_pair_and_the_offset_as_version() -> None:
    _, changes = run([ev("START", 10), ev("END", 20)])
    assert changes[-1].row == SessionRow("acc", "APPSTART", "sess-0001", "closed", 10, 20, 10, 0, 1)


def test_distinct_types_and_sessions_are_distinct_pairs() -> None:
    m = SessionPairer(CFG)
    feed(m, ev("START", 10), 0)
    feed(m, SessionEvent("acc", "x", "START", "OTHER", 10, "sess-0001"), 1)
    feed(m, ev("START", 10, session="sess-0002"), 2)
    feed(m, SessionEvent("acc2", "y", "START", "APPSTART", 10, "sess-0001"), 3)
    assert len(m) == 4


# --- timeouts -----------------------------------------------------------------------------------------------------
def test_timeout_is_judged_by_the_partition_watermark() -> None:
    m, _ = run([ev("START", 10)])
    assert feed(m, ev("START", 10 + T - 1, session="other-01"), 1)[0].key != KEY  # watermark 109: still open
    assert m.row(KEY).status == "open"
    changes = feed(m, ev("START", 10 + T, session="other-02"), 2)
    mine = [c for c in changes if c.key == KEY]
    assert len(mine) == 1 and summary(mine[0].row) == ("timed_out", 10, None, None, 0)
    assert mine[0].row.row_version == 2  # the offset of the event that moved the watermark
    assert mine[0].state is not None


@pytest.mark.parametrize("order", ["start-first", "end-first"])
def test_end_later_than_timeout_leaves_the_session_timed_out(order: str) -> None:
    events = [ev("START", 10), ev("END", 10 + T + 5)]
    if order == "end-first":
        events.reverse()
    _, changes = run(events)
    assert summary(last_row(changes)) == ("timed_out", 10, 10 + T + 5, T + 5, 0)


def test_timed_out_then_late_end_shows_the_end() -> None:
    _, changes = run([ev("START", 10), ev("START", 10 + T + 1, session="other-01"), ev("END", 10 + T + 2)])
    rows = [summary(c.row) for c in changes if c.key == KEY and c.row]
    assert rows == [("open", 10, None, None, 0), ("timed_out", 10, None, None, 0),
                    ("timed_out", 10, 10 + T + 2, T + 2, 0)]


def test_end_exactly_at_timeout_is_timed_out() -> None:
    _, changes = run([ev("START", 10), ev("END", 10 + T)])
    assert last_row(changes).status == "timed_out"


# --- orphans ------------------------------------------------------------------------------------------------------
def test_end_without_start_is_invisible_then_orphan_after_grace() -> None:
    m, changes = run([ev("END", 100)])
    assert [c.row for c in changes] == [None] and changes[0].state is not None
    assert m.row(KEY) is None
    assert not [c for c in feed(m, ev("START", 100 + G - 1, session="other-01"), 1) if c.key == KEY]
    changes = [c for c in feed(m, ev("START", 100 + G, session="other-02"), 2) if c.key == KEY]
    assert summary(changes[0].row) == ("orphan", None, 100, None, 0) and changes[0].row.row_version == 2


def test_update_only_orphan_counts_updates() -> None:
    _, changes = run([ev("UPDATE", 100, "u1"), ev("UPDATE", 101, "u2"), ev("UPDATE", 100 + G)])
    assert summary(last_row(changes)) == ("orphan", None, None, None, 3)


def test_late_start_turns_an_orphan_into_a_closed_session() -> None:
    _, changes = run([ev("END", 100), ev("UPDATE", 100 + G), ev("START", 90)])
    rows = [summary(c.row) for c in changes if c.row]
    assert rows == [("orphan", None, 100, None, 1), ("closed", 90, 100, 10, 1)]


def test_orphan_grace_counts_from_the_earliest_event_of_the_key() -> None:
    _, changes = run([ev("END", 100), ev("UPDATE", 95)])  # watermark 100 < 95 + 20
    assert all(c.row is None for c in changes)
    _, changes = run([ev("END", 100), ev("UPDATE", 80)])  # watermark 100 >= 80 + 20
    assert summary(last_row(changes)) == ("orphan", None, 100, None, 1)


# --- duplicates and replay ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dup", [ev("START", 10), ev("UPDATE", 20), ev("END", 50)], ids=["start", "update", "end"])
def test_duplicate_delivery_changes_nothing(dup: SessionEvent) -> None:
    m, _ = run([ev("START", 10), ev("UPDATE", 20), ev("END", 50)])
    before = dict(m.snapshot())
    assert feed(m, dup, 10) == []
    assert dict(m.snapshot()) == before


def test_replay_at_an_applied_offset_is_skipped() -> None:
    m, _ = run([ev("START", 10), ev("UPDATE", 20)])
    assert feed(m, ev("UPDATE", 30, "new-update"), 1) == []  # offset 1 already applied to the key
    assert m.row(KEY).update_count == 1
    assert feed(m, ev("UPDATE", 30, "new-update"), 2)[0].row.update_count == 2


def test_unknown_action_is_invalid_input() -> None:
    with pytest.raises(ValueError, match="action"):
        SessionEvent("acc", "id", "PAUSE", "APPSTART", 1, "sess-0001")


# --- eviction and late events -------------------------------------------------------------------------------------
def test_terminal_state_is_evicted_once_the_watermark_passes_last_plus_retention() -> None:
    m, _ = run([ev("START", 10), ev("END", 50)])
    assert not [c for c in feed(m, ev("START", 50 + R - 1, session="other-01"), 2) if c.key == KEY]
    changes = [c for c in feed(m, ev("START", 50 + R, session="other-02"), 3) if c.key == KEY]
    assert [(c.row, c.state) for c in changes] == [(None, None)] and changes[0].tombstone is not None
    assert len(m) == 2


def test_timeout_and_eviction_in_one_jump_write_the_final_row_with_the_delete() -> None:
    m, _ = run([ev("START", 10)])
    changes = [c for c in feed(m, ev("START", 10 + 10 * R, session="other-01"), 1) if c.key == KEY]
    assert len(changes) == 1 and changes[0].state is None
    assert summary(changes[0].row) == ("timed_out", 10, None, None, 0) and changes[0].row.row_version == 1


def test_events_older_than_retention_are_dropped() -> None:
    m, _ = run([ev("START", 10), ev("END", 50), ev("START", 50 + R, session="other-01")])
    assert len(m) == 1  # the closed session is gone
    assert feed(m, ev("START", 10), 7) == []  # a replay or duplicate of it: too late, dropped
    assert feed(m, ev("UPDATE", 50, "fresh"), 8) == []  # timestamp + R <= watermark
    assert m.dropped_late == 2 and len(m) == 1


def test_reused_session_after_eviction_starts_afresh() -> None:
    m, _ = run([ev("START", 10), ev("END", 50)])
    changes = feed(m, ev("START", 1000, "second-life"), 2)
    assert changes[0].key == KEY and summary(changes[0].row) == ("open", 1000, None, None, 0)
    assert changes[0].state is not None and len(m) == 1


def test_memory_stays_bounded() -> None:
    m = SessionPairer(CFG)
    for i in range(2000):
        feed(m, ev("START", i, session=f"s{i:07d}"), 2 * i)
        feed(m, ev("END", i + 1, session=f"s{i:07d}"), 2 * i + 1)
    assert len(m) <= R + 2


# --- persistence ----------------------------------------------------------------------------------------------------
def test_restore_reproduces_the_machine() -> None:
    events = [ev("END", 100), ev("START", 10, session="s-open"), ev("UPDATE", 30, "u", session="s-open"),
              ev("UPDATE", 101)]
    m, _ = run(events)
    copy = SessionPairer(CFG, m.watermark, [s for _, s in m.snapshot()])
    assert dict(copy.snapshot()) == dict(m.snapshot()) and copy.watermark == m.watermark and len(copy) == len(m)
    tail = [ev("START", 95), ev("START", 200, session="x-01"), ev("END", 60, session="s-open")]
    assert run(tail, copy, 10)[1] == run(tail, m, 10)[1]


def test_changes_carry_the_state_to_persist() -> None:
    m = SessionPairer(CFG)
    persisted: dict[str, bytes] = {}
    for offset, e in enumerate([ev("START", 10), ev("UPDATE", 20), ev("START", 11, session="s2"),
                                ev("START", 300, session="s3")]):
        for c in feed(m, e, offset):
            if c.state is None:
                persisted.pop(c.key, None)
            else:
                persisted[c.key] = c.state
    assert persisted == dict(m.snapshot())


@pytest.mark.parametrize("blob", [b"", b"\x02\x00\x00\x00\x00", b"\x01\x05\x00\x00\x00[1,2]", b"\x01\xff\xff\x00\x00x"])
def test_corrupt_state_is_rejected(blob: bytes) -> None:
    with pytest.raises(ValueError):
        SessionPairer(CFG, 0, [blob])


@pytest.mark.parametrize("ts", [-1, 2**32])
def test_a_timestamp_outside_uint32_is_invalid_input(ts: int) -> None:
    with pytest.raises(ValueError, match=r"timestamp: must be 0 \.\. 4294967295 \(1970-01-01 \.\. 2106-02-07\)"):
        ev("START", ts)
    assert [ev("START", 0).timestamp, ev("START", 2**32 - 1).timestamp] == [0, 2**32 - 1]


# format 1, key length 30, the key, then the 64-bit header (offset 9, start, end, first, last, deadline 0, flags
# START|END) and one UPDATE digest: what the 64-bit in-memory header wrote, before memory held 32-bit times
PERSISTED = bytes.fromhex(
    "011e0000005b22616363222c22736573732d30303031222c224150505354415254225d"
    "0900000000000000" "00f1536500000000" "32f1536500000000" "00f1536500000000" "32f1536500000000"
    "0000000000000000" "03" "92994d683f4e6ad5")


def test_the_persisted_state_keeps_its_64_bit_layout() -> None:
    m = SessionPairer(CFG)
    t0 = 1_700_000_000
    for offset, e in enumerate([ev("START", t0, "s"), ev("UPDATE", t0 + 30, "u1"), ev("END", t0 + 50, "e")], 7):
        changes = m.process(e, offset)
    assert changes[-1].state == PERSISTED and dict(m.snapshot()) == {KEY: PERSISTED}
    restored = SessionPairer(CFG, m.watermark, [PERSISTED])
    assert dict(restored.snapshot()) == {KEY: PERSISTED}
    assert summary(restored.row(KEY)) == ("closed", t0, t0 + 50, 50, 1)
    gone = [c for c in restored.process(ev("START", t0 + 50 + R, session="other-01"), 10) if c.key == KEY]
    assert gone[0].state is None and gone[0].tombstone == PERSISTED


@pytest.mark.parametrize("field", range(1, 5))  # start, end, first, last
def test_a_persisted_time_beyond_uint32_is_corrupt_state(field: int) -> None:
    at = 5 + 30 + 8 * field
    blob = PERSISTED[:at] + (2**32).to_bytes(8, "little") + PERSISTED[at + 8:]
    with pytest.raises(ValueError, match="corrupt session state"):
        SessionPairer(CFG, 0, [blob])
    m = SessionPairer(CFG, 0)
    with pytest.raises(ValueError, match="corrupt session state"):
        m.recall([KEY], [blob])
    with pytest.raises(ValueError, match="corrupt session state"):
        m.forgettable(blob)


# keys with non-ASCII text, a lone surrogate (kept as is by the JSON key, UTF-8 only with "surrogatepass") and
# characters JSON escapes
ODD = [("acç", "s\udc80-1", "APPSTART"), ("acc", "sess-\U0001f600", "ÄPP"), ('a"c', "s\\x", "T\u00e9")]


def test_keys_beyond_ascii_round_trip_through_every_api() -> None:
    keys = [state_key(a, s, t) for a, s, t in ODD]
    m = SessionPairer(CFG)
    for i, (a, s, t) in enumerate(ODD):
        assert [c.key for c in m.process(SessionEvent(a, f"s{i}", "START", t, 10, s), i)] == [keys[i]]
        row = m.row(keys[i])
        assert (row.account_id, row.session, row.type) == (a, s, t)
    snap = dict(m.snapshot())
    assert sorted(snap) == sorted(keys)
    restored = SessionPairer(CFG, m.watermark, list(snap.values()))
    assert dict(restored.snapshot()) == snap
    changes = restored.process(SessionEvent("zz", "c", "START", "A", 10 + R, "clock-0001"), 3)
    evicted = [c for c in changes if c.state is None]
    assert [c.key for c in evicted] == sorted(keys) and [c.key for c in changes] == sorted(c.key for c in changes)
    assert all(c.tombstone is not None and c.row is not None for c in evicted)
    # memory is lost (kill -9): the keys are looked up by their str, their tombstones come back
    fresh = SessionPairer(CFG, restored.watermark, [s for _, s in restored.snapshot()])
    ends = [SessionEvent(a, f"e{i}", "END", t, 11 + R, s) for i, (a, s, t) in enumerate(ODD)]
    assert fresh.unknown_keys(ends) == keys
    fresh.recall(keys[:2], [c.tombstone for c in evicted if c.key in keys[:2]], forgotten=[])
    fresh.recall(keys[2:], [], forgotten=keys[2:])
    for offset, e in enumerate(ends[:2], 4):
        (change,) = fresh.process(e, offset)
        assert change.key in keys[:2] and summary(change.row) == ("timed_out", 10, 11 + R, 1 + R, 0)
    assert fresh.process(ends[2], 6) == [] and fresh.dropped_late == 1


def test_config_rejects_non_positive_durations() -> None:
    with pytest.raises(ValueError):
        SessionConfig(session_timeout_s=0)


# --- properties -----------------------------------------------------------------------------------------------------
ACTIONS = st.sampled_from(["START", "UPDATE", "UPDATE", "END"])


@st.composite
def key_events(draw: st.DrawFn, n_keys: int = 6) -> list[SessionEvent]:
    """Events of a few pairs; each pair's events span less than the timeout (see the module's retention note)."""
    events: list[SessionEvent] = []
    for k in range(draw(st.integers(1, n_keys))):
        base = draw(st.integers(0, 400))
        for i in range(draw(st.integers(1, 5))):
            action = draw(ACTIONS)
            ts = base + draw(st.integers(0, T - 1))
            event_id = f"k{k}-{i}" if action == "UPDATE" and draw(st.booleans()) else f"k{k}-{action}-{ts}"
            events.append(SessionEvent("acc", event_id, action, draw(st.sampled_from(["A", "B"])), ts, f"sess-{k:04d}"))
    return events


def reference(events: list[SessionEvent], watermark: int) -> dict[str, tuple]:
    """The rows the set of events must produce, computed directly from SPEC §3.1 (watermark = the final one)."""
    by_key: dict[str, list[SessionEvent]] = {}
    for e in events:
        by_key.setdefault(state_key(e.account_id, e.session, e.type), []).append(e)
    rows = {}
    for key, evs in by_key.items():
        starts = [e.timestamp for e in evs if e.action == "START"]
        ends = [e.timestamp for e in evs if e.action == "END"]
        updates = len({e.event_id for e in evs if e.action == "UPDATE"})
        first = min(e.timestamp for e in evs)
        end = max(ends) if ends else None
        if not starts:
            if watermark >= first + G:
                rows[key] = ("orphan", None, end, None, updates)
            continue
        start = min(starts)
        if end is not None:
            rows[key] = ("closed" if end - start < T else "timed_out", start, end, end - start, updates)
        else:
            rows[key] = ("open" if watermark < start + T else "timed_out", start, None, None, updates)
    return rows


def summaries(changes: list[Change]) -> dict[str, tuple]:
    return {k: summary(r) for k, r in final_rows(changes).items()}


def within_grace(events: list[SessionEvent], rnd: random.Random) -> list[SessionEvent]:
    """An arrival order in which no event comes after the watermark passed its timestamp + grace."""
    delayed = [(e.timestamp + rnd.randrange(G), i, e) for i, e in enumerate(events)]
    return [e for _, _, e in sorted(delayed)]


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(key_events(), st.randoms(use_true_random=False))
def test_shuffles_within_grace_give_the_reference_rows(events: list[SessionEvent], rnd: random.Random) -> None:
    arrival = within_grace(events, rnd)
    m, changes = run(arrival)
    assert summaries(changes) == reference(events, m.watermark)
    flush = SessionEvent("zz", "flush", "START", "A", m.watermark + 10 * R, "flush-000")
    _, more = run([flush], m, len(arrival))
    assert summaries(changes + more) == {**reference(events, flush.timestamp), **summaries(more)}
    assert len(m) == 1  # everything but the flush key evicted


@PROPS
@given(key_events(), st.lists(st.integers(0, 10_000), max_size=8), st.randoms(use_true_random=False))
def test_restore_points_do_not_change_the_result(events: list[SessionEvent], cuts: list[int],
                                                 rnd: random.Random) -> None:
    arrival = within_grace(events, rnd) + [SessionEvent("zz", "f", "START", "A", 10_000, "flush-000")]
    whole, expected = run(arrival)
    points = sorted({c % (len(arrival) + 1) for c in cuts})
    m, changes, done, tombstones = SessionPairer(CFG), [], 0, {}
    for point in points + [len(arrival)]:
        for offset in range(done, point):
            changes.extend(feed(m, arrival[offset], offset, tombstones))
        done = point
        m = SessionPairer(CFG, m.watermark, [s for _, s in m.snapshot()])  # crash and restore here
        replay_from = rnd.randrange(point + 1)  # ... then replay from an older committed offset: a no-op
        for offset in range(replay_from, point):
            assert feed(m, arrival[offset], offset, tombstones) == []
    assert changes == expected
    assert dict(m.snapshot()) == dict(whole.snapshot())


@PROPS
@given(key_events(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), max_size=10),
       st.randoms(use_true_random=False))
def test_duplicate_deliveries_do_not_change_the_rows(events: list[SessionEvent], dups: list[tuple[int, int]],
                                                     rnd: random.Random) -> None:
    arrival = within_grace(events, rnd)
    with_dups = list(arrival)
    for which, delay in dups:  # re-deliver an event any time after its first delivery
        i = which % len(arrival)
        position = with_dups.index(arrival[i]) + 1 + delay % (len(with_dups) - with_dups.index(arrival[i]))
        with_dups.insert(position, arrival[i])
    m1, clean = run(arrival)
    m2, dirty = run(with_dups)
    assert summaries(dirty) == summaries(clean)
    live = {k for k, _ in m1.snapshot()}
    assert {k for k, _ in m2.snapshot()} == live
    assert all(m2.row(k) == m1.row(k) for k in live)


# --- sessions that outlive memory (SPEC §3.1: a session whose START was seen is never an orphan) -----------------
HOUR, DAY = 3600, 86400
REAL = SessionConfig()  # the defaults: timeout 24 h, grace 1 h, late horizon 7 days


def real_time(events: list[SessionEvent], until: int, step: int = 600) -> tuple[SessionPairer, list[Change]]:
    """``events`` interleaved with other devices' STARTs every ``step`` seconds, which move the watermark in real
    time; the tombstones are persisted and looked up as the worker does."""
    clock = [SessionEvent("acc", f"other-{t}", "START", "APPSTART", t, f"dev-{t:012d}")
             for t in range(events[0].timestamp, until, step)]
    merged = sorted(clock + events, key=lambda e: (e.timestamp, e.session.startswith("dev-")))
    m, tombstones, changes = SessionPairer(REAL), {}, []
    for offset, e in enumerate(merged):
        changes.extend(feed(m, e, offset, tombstones))
        if offset % 50 == 0:
            m.persisted()  # as after each flush: from here on the tombstones come from the store
    return m, [c for c in changes if c.key == KEY]


def test_end_25h_after_start_is_timed_out_with_its_start() -> None:
    t0 = 1_700_000_000
    _, changes = real_time([ev("START", t0), ev("END", t0 + 36 * HOUR)], until=t0 + 40 * HOUR)
    rows = [summary(c.row) for c in changes if c.row]
    assert rows == [("open", t0, None, None, 0), ("timed_out", t0, None, None, 0),
                    ("timed_out", t0, t0 + 36 * HOUR, 36 * HOUR, 0)]
    assert any(c.tombstone for c in changes)  # it left memory in between


def test_update_after_a_two_day_gap_then_end() -> None:
    t0 = 1_700_000_000
    _, changes = real_time([ev("START", t0), ev("UPDATE", t0 + 2 * DAY, "u"), ev("END", t0 + 2 * DAY + HOUR)],
                           until=t0 + 3 * DAY)
    assert summary(last_row(changes)) == ("timed_out", t0, t0 + 2 * DAY + HOUR, 2 * DAY + HOUR, 1)
    assert all(c.row.start_time == t0 for c in changes if c.row)


def test_start_only_times_out_and_stays_so() -> None:
    t0 = 1_700_000_000
    m, changes = real_time([ev("START", t0)], until=t0 + 10 * DAY, step=3 * HOUR)
    assert summary(last_row(changes)) == ("timed_out", t0, None, None, 0)
    assert m.row(KEY) is None  # evicted: memory stays bounded


def test_a_session_id_reused_days_later_by_a_start_is_a_new_session() -> None:
    t0 = 1_700_000_000
    _, changes = real_time([ev("START", t0), ev("END", t0 + HOUR), ev("START", t0 + 3 * DAY, "again")],
                           until=t0 + 3 * DAY + HOUR)
    assert summary(last_row(changes)) == ("open", t0 + 3 * DAY, None, None, 0)


def test_an_update_or_end_beyond_the_horizon_leaves_the_row_as_it_was() -> None:
    t0 = 1_700_000_000
    m, changes = real_time([ev("START", t0), ev("UPDATE", t0 + 8 * DAY, "late"), ev("END", t0 + 8 * DAY + 1)],
                           until=t0 + 8 * DAY + HOUR, step=3 * HOUR)
    assert summary(last_row(changes)) == ("timed_out", t0, None, None, 0)
    assert m.dropped_late == 2 and m.row(KEY) is None


def test_an_ended_session_ignores_what_comes_after_it_left_memory() -> None:
    t0 = 1_700_000_000
    _, changes = real_time([ev("START", t0), ev("END", t0 + HOUR), ev("UPDATE", t0 + 2 * DAY, "late"),
                            ev("END", t0 + 2 * DAY + 5, "late-end")], until=t0 + 3 * DAY)
    assert summary(last_row(changes)) == ("closed", t0, t0 + HOUR, HOUR, 0)


def test_an_orphan_that_left_memory_keeps_counting() -> None:
    t0 = 1_700_000_000
    _, changes = real_time([ev("UPDATE", t0, "u1"), ev("UPDATE", t0 + 2 * DAY, "u2")], until=t0 + 2 * DAY + 2 * HOUR)
    assert summary(last_row(changes)) == ("orphan", None, None, None, 2)


def test_an_update_or_end_of_a_key_not_looked_up_is_a_bug_of_the_caller() -> None:
    from consumers.sessions import RecallRequired

    with pytest.raises(RecallRequired):
        SessionPairer(CFG).process(ev("END", 10), 0)
    m = SessionPairer(CFG)
    assert m.unknown_keys([ev("START", 10), ev("END", 20)]) == []  # the START brings the key into memory first
    assert m.unknown_keys([ev("END", 20), ev("UPDATE", 21)]) == [KEY]


def test_recall_after_a_restore_uses_the_persisted_tombstone() -> None:
    tombstones: dict[str, bytes] = {}
    m = SessionPairer(CFG)
    for offset, e in enumerate([ev("START", 10), ev("START", 10 + R, session="other-01")]):
        feed(m, e, offset, tombstones)
    assert KEY in tombstones and m.row(KEY) is None
    m = SessionPairer(CFG, m.watermark, [s for _, s in m.snapshot()])  # kill -9 and restore: memory is gone
    assert m.unknown_keys([ev("END", 10 + R + 5)]) == [KEY]
    changes = [c for c in feed(m, ev("END", 10 + R + 5), 2, tombstones) if c.key == KEY]
    assert summary(changes[0].row) == ("timed_out", 10, 10 + R + 5, R + 5, 0)


def test_a_tombstone_is_forgettable_once_no_event_that_is_not_too_late_can_join_it() -> None:
    cfg = SessionConfig(session_timeout_s=T, orphan_grace_s=G, late_horizon_s=600)
    tombstones: dict[str, bytes] = {}
    m = SessionPairer(cfg)
    for offset, e in enumerate([ev("START", 10), ev("UPDATE", 30, "u"), ev("START", 30 + R, session="other-01")]):
        feed(m, e, offset, tombstones)
    tomb = tombstones[KEY]
    assert not m.forgettable(tomb)
    feed(m, ev("START", 30 + 600 + R - 1, session="other-02"), 3, tombstones)
    assert not m.forgettable(tomb)  # an UPDATE at 30 + 600 - 1 is not too late, and would still join it
    feed(m, ev("START", 30 + 600 + R, session="other-03"), 4, tombstones)
    assert m.forgettable(tomb)      # anything not too late now lies at 30 + 600 or after: beyond the horizon
    with pytest.raises(ValueError):
        m.forgettable(b"\x07junk")


def test_an_update_or_end_of_a_forgotten_key_is_ignored_and_a_start_begins_afresh() -> None:
    m = SessionPairer(CFG, watermark=10_000)
    keys = m.unknown_keys([ev("UPDATE", 9_990, "u"), ev("END", 9_991)])
    assert keys == [KEY]
    m.recall(keys, [], forgotten=[KEY])
    assert m.process(ev("UPDATE", 9_990, "u"), 0) == [] and m.process(ev("END", 9_991), 1) == []
    assert m.dropped_late == 2 and m.row(KEY) is None
    assert summary(last_row(m.process(ev("START", 9_995), 2))) == ("open", 9_995, None, None, 0)
    m2 = SessionPairer(CFG, watermark=10_000)
    m2.recall([KEY], [], forgotten=[])  # not forgotten: a key never seen starts as a (pending) orphan
    assert [c.key for c in m2.process(ev("UPDATE", 9_990, "u"), 0)] == [KEY] and m2.dropped_late == 0


@st.composite
def long_sessions(draw: st.DrawFn) -> list[SessionEvent]:
    """Sessions with one START each and later UPDATEs/ENDs at any distance, some far beyond T + G."""
    events = []
    for k in range(draw(st.integers(1, 5))):
        start = draw(st.integers(0, 300))
        events.append(SessionEvent("acc", f"s{k}", "START", "A", start, f"sess-{k:04d}"))
        for i in range(draw(st.integers(0, 4))):
            action = draw(st.sampled_from(["UPDATE", "END"]))
            ts = start + draw(st.integers(0, 6 * R))
            events.append(SessionEvent("acc", f"k{k}-{i}", action, "A", ts, f"sess-{k:04d}"))
    return events


@PROPS
@given(long_sessions(), st.integers(1, 30), st.randoms(use_true_random=False))
def test_a_session_whose_start_was_seen_keeps_it(events: list[SessionEvent], persist_every: int,
                                                 rnd: random.Random) -> None:
    arrival = sorted(events, key=lambda e: (e.timestamp + rnd.randrange(G), e.action != "START"))
    starts = {state_key(e.account_id, e.session, e.type): e.timestamp for e in events if e.action == "START"}
    m, tombstones, changes = SessionPairer(CFG), {}, []
    clock = [SessionEvent("zz", f"c{t}", "START", "A", t, f"clock-{t:06d}") for t in range(0, 8 * R, 7)]
    merged = sorted(arrival + clock, key=lambda e: e.timestamp)  # stable: the arrival order within a second stays
    seen_start: set[str] = set()
    for offset, e in enumerate(merged):
        key = state_key(e.account_id, e.session, e.type)
        if e.action == "START" and key in starts:
            seen_start.add(key)
        for c in feed(m, e, offset, tombstones):
            if c.row is not None and c.key in seen_start:
                assert c.row.status != "orphan" and c.row.start_time == starts[c.key], (e, c)
        if offset % persist_every == 0:
            m.persisted()
