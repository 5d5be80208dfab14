"""Join windows (SPEC §3.2): a table of cases per rule, then properties checked with hypothesis."""

from __future__ import annotations

from array import array

import json
import uuid
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.joins import (JOINED_EVENT_NAMESPACE, Change, JoinConfig, JoinedEventRow, JoinRecord, JoinWindows,
                             _HDR, _Digests, _Groups, _id_key, _id_text, chunk_key,
                             event_key)

CFG = JoinConfig(retention_s=3600)
S = 1000  # one second in ms
KEY = event_key("acc", "comp", "type", "E1")
_n = iter(range(10**9))


def rec(start_s: float, event_id: str | None = None, interval: float = 600, count: int = 1,
        version: str | None = None, importance: str = "Alarm", join_key: int = 0, record_id: str | None = None,
        message: str | None = None) -> JoinRecord:
    rid = record_id or f"r{next(_n)}"
    return JoinRecord("acc", rid, event_id, "comp", "type", join_key, int(start_s * S), interval, importance, count,
                      message or f"msg {rid}", version)


def run(records: list[JoinRecord], machine: JoinWindows | None = None,
        first_offset: int = 0) -> tuple[JoinWindows, list[Change]]:
    machine = JoinWindows(CFG) if machine is None else machine
    changes: list[Change] = []
    for offset, r in enumerate(records, first_offset):
        changes.extend(machine.process(r, offset))
    return machine, changes


def final_rows(changes: list[Change], with_version: bool = False) -> dict[tuple, JoinedEventRow]:
    """What ``joined_events_final`` shows: the last row written per (account, component, type, event_id)."""
    rows = {}
    for c in changes:
        if c.row is not None:
            r = c.row
            rows[(r.account_id, r.component_id, r.type_id, r.event_id)] = r if with_version else replace(
                r, row_version=0)
    return rows


def events(changes: list[Change]) -> list[tuple]:
    """(id, start s, end s, count, records) of every joined event, in order of id."""
    return sorted((r.event_id, r.start_time / S, r.end_time / S, r.count, r.records)
                  for r in final_rows(changes).values())


def rowed(changes: list[Change]) -> list[Change]:
    """The changes that carry a row (the others persist or delete digest chunks, or delete expired events)."""
    return [c for c in changes if c.row is not None]


def derived(record: JoinRecord) -> str:
    return str(uuid.uuid5(JOINED_EVENT_NAMESPACE, record.record_id))


# --- joining --------------------------------------------------------------------------------------------------------
def test_seed_record_and_its_extension_make_one_joined_event_with_the_summed_count() -> None:
    seed = rec(0, "E1", interval=600, count=2, message="first")
    ext = rec(500, "E1", interval=600, count=3, message="second")
    _, changes = run([seed, ext])
    assert [c.key for c in changes] == [KEY] * 2 and all(c.state for c in changes)  # digests ride in its state
    changes = rowed(changes)
    assert changes[-1].row == JoinedEventRow("acc", "E1", "comp", "type", 0, "Alarm", 0, 500 * S, 1100 * S, 5,
                                             "second", None, 2, 1)
    assert changes[0].row.start_time == changes[0].row.end_time == 0 and changes[0].row.actual_time == 600 * S


def test_count_accumulates_over_many_records() -> None:
    _, changes = run([rec(i * 10, "E1", interval=60, count=i + 1) for i in range(50)])
    assert events(changes) == [("E1", 0, 490, sum(range(1, 51)), 50)]


@pytest.mark.parametrize(("gap_ms", "joins"), [
    (600 * S + S, True),  # end + 1 s + interval == start
    (600 * S + S + 1, False),
    (0, True),
])
def test_join_window_boundary(gap_ms: int, joins: bool) -> None:
    first = rec(0, "E1", interval=600)
    second = replace(rec(0, "E1", interval=600), start_date=gap_ms)
    _, changes = run([first, second])
    assert len(events(changes)) == (1 if joins else 2)


def test_join_interval_zero_never_joins() -> None:
    first, second = rec(0, "E1", interval=0), rec(0, "E1", interval=0)
    _, changes = run([first, second])
    assert events(changes) == sorted([("E1", 0, 0, 1, 1), (derived(second), 0, 0, 1, 1)])


def test_join_interval_of_the_record_decides() -> None:
    _, changes = run([rec(0, "E1", interval=0), rec(100, "E1", interval=600)])  # the first had interval 0
    assert events(changes) == [("E1", 0, 100, 2, 2)]


def test_earlier_record_keeps_end_time_and_sets_actual_and_message() -> None:
    _, changes = run([rec(100, "E1", message="a"), rec(50, "E1", interval=10, message="b")])
    row = rowed(changes)[-1].row
    assert (row.start_time, row.end_time, row.actual_time, row.message) == (100 * S, 100 * S, 60 * S, "b")


def test_fractional_join_interval_is_kept_to_the_millisecond() -> None:
    _, changes = run([rec(0, "E1", interval=0.25), replace(rec(0, "E1", interval=0.25), start_date=1250)])
    assert rowed(changes)[-1].row.records == 2 and rowed(changes)[-1].row.actual_time == 1500


def test_absurd_join_interval_is_capped() -> None:
    _, changes = run([rec(0, "E1", interval=1e306)])
    assert rowed(changes)[0].row.actual_time == 100 * 366 * 86400 * S


# --- candidates ---------------------------------------------------------------------------------------------------
def test_without_event_id_the_latest_joined_event_of_the_group_is_the_candidate() -> None:
    _, changes = run([rec(0, "E1", interval=0), rec(10, "E2", interval=0), rec(20, None, interval=60)])
    assert events(changes) == [("E1", 0, 0, 1, 1), ("E2", 10, 20, 2, 2)]


def test_latest_means_greatest_end_time() -> None:
    _, changes = run([rec(100, "E1", interval=0), rec(10, "E2", interval=0), rec(120, None, interval=60)])
    assert events(changes) == [("E1", 100, 120, 2, 2), ("E2", 10, 10, 1, 1)]


def test_unknown_event_id_falls_back_to_the_latest() -> None:
    _, changes = run([rec(0, "E1"), rec(10, "NOPE")])
    assert events(changes) == [("E1", 0, 10, 2, 2)]


def test_named_event_not_joinable_falls_back_to_the_latest() -> None:
    records = [rec(0, "E1", interval=0), rec(1000, "E2", interval=0), rec(1010, "E1", interval=60)]
    _, changes = run(records)  # E1 is too old for a 60 s window, E2 (the latest) is not
    assert events(changes) == [("E1", 0, 0, 1, 1), ("E2", 1000, 1010, 2, 2)]


def test_nothing_joinable_starts_a_new_event_with_a_derived_id_when_the_named_one_is_taken() -> None:
    late = rec(2000, "E1", interval=60)
    _, changes = run([rec(0, "E1"), late])
    assert events(changes) == sorted([("E1", 0, 0, 1, 1), (derived(late), 2000, 2000, 1, 1)])


def test_new_event_without_event_id_gets_the_derived_id() -> None:
    r = rec(0)
    _, changes = run([r])
    assert rowed(changes)[0].row.event_id == derived(r) == str(uuid.uuid5(JOINED_EVENT_NAMESPACE, r.record_id))


@pytest.mark.parametrize("other", [{"importance": "Warning"}, {"join_key": 7}])
def test_different_importance_or_join_key_never_joins(other: dict) -> None:
    second = rec(10, "E1", **other)
    _, changes = run([rec(0, "E1"), second])
    assert events(changes) == sorted([("E1", 0, 0, 1, 1), (derived(second), 10, 10, 1, 1)])
    assert len({c.key for c in rowed(changes)}) == 2


def test_different_component_is_a_different_id_scope() -> None:
    a = rec(0, "E1")
    b = replace(rec(0, "E1"), component_id="comp2")
    _, changes = run([a, b])
    assert [c.row.event_id for c in rowed(changes)] == ["E1", "E1"]


# --- versions -----------------------------------------------------------------------------------------------------
def test_same_version_joins() -> None:
    _, changes = run([rec(0, "E1", version="1.0"), rec(10, "E1", version="1.0")])
    assert events(changes) == [("E1", 0, 10, 2, 2)]


def test_different_versions_do_not_join() -> None:
    second = rec(10, "E1", version="2.0")
    _, changes = run([rec(0, "E1", version="1.0"), second])
    assert events(changes) == sorted([("E1", 0, 0, 1, 1), (derived(second), 10, 10, 1, 1)])


def test_versioned_record_falls_back_to_the_latest_of_its_version() -> None:
    records = [rec(0, "V1", version="1.0"), rec(5, "V2", version="2.0"), rec(10, None, version="1.0")]
    _, changes = run(records)
    assert events(changes) == [("V1", 0, 10, 2, 2), ("V2", 5, 5, 1, 1)]


def test_version_matters_only_when_both_have_one() -> None:
    _, changes = run([rec(0, "E1"), rec(5, "E1", version="1.0"), rec(10, "E1", version=None)])
    assert events(changes) == [("E1", 0, 10, 3, 3)]
    assert rowed(changes)[-1].row.version is None  # the joined event keeps the version of its first record


def test_versioned_record_without_event_id_ignores_unversioned_events() -> None:
    third = rec(10, None, version="1.0")
    _, changes = run([rec(0, "E1"), third])
    assert events(changes) == sorted([("E1", 0, 0, 1, 1), (derived(third), 10, 10, 1, 1)])


# --- duplicates and replay ------------------------------------------------------------------------------------------
def test_same_record_twice_counts_once() -> None:
    r = rec(0, "E1", count=4)
    m, changes = run([r, rec(10, "E1"), r, replace(r, start_date=99)])  # same record_id: a re-delivery
    assert events(changes) == [("E1", 0, 10, 5, 2)] and len(rowed(changes)) == 2


def test_duplicate_of_a_record_that_started_an_older_event_is_still_a_duplicate() -> None:
    r = rec(0, "E1", interval=0)
    _, changes = run([r, rec(10, None, interval=0), r])
    assert len(events(changes)) == 2 and len(rowed(changes)) == 2


def test_replay_at_an_applied_offset_is_skipped() -> None:
    m, _ = run([rec(0, "E1"), rec(10, "E1")])
    assert m.process(rec(20, "E1"), 1) == []
    assert m.process(rec(20, "E1"), 2)[0].row.records == 3


# --- window expiry ------------------------------------------------------------------------------------------------
def test_joined_events_expire_from_memory_by_the_watermark() -> None:
    m, _ = run([rec(0, "E1", interval=600), rec(100, "E1", interval=600)])  # actual_time 700 s
    assert m.process(rec(700 + 3600 - 1, None, join_key=1), 2)[0].key != KEY
    changes = m.process(rec(700 + 3600, None, join_key=2), 3)
    assert Change(KEY, None, None) in changes and len(m) == 2
    assert all(r.event_id != "E1" for r in m.rows())


def test_each_joined_event_expires_on_its_own() -> None:
    m, _ = run([rec(0, "E1", interval=0), rec(3000, "E2", interval=0)])
    changes = m.process(rec(3600, None, join_key=9), 2)
    assert Change(KEY, None, None) in changes
    assert not [c for c in changes if c.key == event_key("acc", "comp", "type", "E2")]
    assert [r.event_id for r in m.rows() if r.join_key == 0] == ["E2"]


def test_a_shorter_interval_brings_expiry_forward() -> None:
    m, _ = run([rec(0, "E1", interval=600), rec(1, "E1", interval=1)])  # actual_time 2 s now
    assert m.rows()[0].records == 2
    assert Change(KEY, None, None) in m.process(rec(2 + 3600, None, join_key=9), 2)


def test_an_expired_id_named_again_starts_a_new_event_under_it() -> None:
    m, _ = run([rec(0, "E1", interval=0)])
    changes = m.process(rec(3600, "E1", interval=0), 1)  # E1 expires, then the record starts E1 anew
    assert [(c.key, c.row and c.row.start_time, c.state is None) for c in changes] == [(KEY, 3600 * S, False)]


def test_records_older_than_retention_are_dropped() -> None:
    m, _ = run([rec(0, "E1"), rec(10_000, None, join_key=1)])
    assert m.process(rec(10_000 - 3600, "E1"), 2) == [] and m.dropped_late == 1
    assert m.process(rec(10_000 - 3599, "E1"), 3)[0].row.event_id == "E1"  # E1 expired: the id is free again


def test_digest_chunks_roll_over_and_expire() -> None:
    m = JoinWindows(JoinConfig(retention_s=60))
    persisted: dict[str, bytes] = {}
    for i in range(1000):  # one record a second into one joined event
        for c in m.process(rec(i, "E1", interval=60), i):
            if c.state is None:
                persisted.pop(c.key, None)
            else:
                persisted[c.key] = c.state
    assert m.rows()[0].records == 1000 and persisted == dict(m.snapshot())
    # records 896..959 in the full chunk 14, 960..999 in the event's own state; older chunks: too late
    assert set(persisted) == {KEY, chunk_key(KEY, 14)}
    assert m.process(rec(999, "E1", interval=60, record_id="r-dup"), 1000)[0].row.records == 1001
    assert m.process(rec(999, "E1", interval=60, record_id="r-dup"), 1001) == []


def test_memory_stays_bounded() -> None:
    m = JoinWindows(JoinConfig(retention_s=60))
    for i in range(3000):
        m.process(rec(i, None, interval=0, join_key=i % 50), i)
    assert len(m) == len(m.rows()) <= 62


# --- persistence and input ----------------------------------------------------------------------------------------
def test_restore_reproduces_the_machine() -> None:
    m, _ = run([rec(0, "E1", version="1"), rec(10, "E1", count=3), rec(20, "E2", importance="Warning"),
                rec(30, None, interval=0)])
    copy = JoinWindows(CFG, m.watermark, [s for _, s in m.snapshot()])
    assert dict(copy.snapshot()) == dict(m.snapshot()) and copy.rows() == m.rows() and len(copy) == len(m)
    tail = [rec(40, "E1"), rec(45, "E2", importance="Warning"), rec(5000, None)]
    assert run(tail, copy, 10)[1] == run(tail, m, 10)[1]


def test_changes_carry_the_state_to_persist() -> None:
    m = JoinWindows(JoinConfig(retention_s=60))
    persisted: dict[str, bytes] = {}
    for offset, r in enumerate([rec(0, "E1"), rec(1, "E1"), rec(2, "X", join_key=3), rec(700, None, join_key=4)]):
        for c in m.process(r, offset):
            if c.state is None:
                persisted.pop(c.key, None)
            else:
                persisted[c.key] = c.state
    assert persisted == dict(m.snapshot())


@pytest.mark.parametrize("blob", [
    b"", b"{}", b'{"v":2}', b'{"v":1,"e":[]}', b"\xff", b'{"v":1,"e":["a","c","t","Alarm",0,"E",null,0,0,0,1,"m",1,0]}',
    b'{"v":1,"c":["a","c","t","E",0],"d":"AAAA"}',  # not a whole number of digests
    b'{"v":1,"c":["a","c","t","E",0],"d":"AAAAAAAAAAAAAAAAAAAAAA=="}',  # a chunk without its event
])
def test_corrupt_state_is_rejected(blob: bytes) -> None:
    with pytest.raises(ValueError):
        JoinWindows(CFG, 0, [blob])


def test_state_of_the_json_format_is_refused_with_what_to_do() -> None:
    old = b'{"v":1,"e":["acc","comp","type","Alarm",0,"E1",null,0,0,600000,1,"m",1,0,0]}'
    with pytest.raises(ValueError, match="consumer_state holds joins state of format 1.*replay"):
        JoinWindows(CFG, 0, [old])


# --- memory (issue 16): how a window is held, not what it does ---------------------------------------------------
def test_a_window_is_held_as_its_persisted_state_without_its_identity() -> None:
    m, _ = run([rec(0, "E1", version="1.0"), rec(1, "E1"), rec(2, None, join_key=3, interval=0)])
    restored = JoinWindows(CFG, m.watermark, [s for _, s in m.snapshot()])
    for machine in (m, restored):
        (scope,) = machine._scopes.values()  # the ids of (account, component, type) once, not per window
        assert {type(v) for v in scope.events.values()} == {bytes}
        assert all(state.endswith(scope.events[_id_key(json.loads(key)[3])]) for key, state in machine.snapshot())
    assert dict(restored.snapshot()) == dict(m.snapshot())


def test_a_restore_reads_its_states_once_as_they_come() -> None:
    m, _ = run([rec(i, None, join_key=i % 7, interval=2) for i in range(200)] + [rec(i, "E1") for i in range(150)])
    streamed = JoinWindows(CFG, m.watermark, (s for _, s in m.snapshot()))
    assert dict(streamed.snapshot()) == dict(m.snapshot()) and len(streamed) == len(m)
    tail = [rec(300, None, join_key=3, interval=600), rec(5000, None)]
    assert run(tail, streamed, 200)[1] == run(tail, m, 200)[1]


@pytest.mark.parametrize("text, as_int", [
    ("5d3c1f4e-2b7a-5e0c-9a41-6f0e8b2d7c13", True), ("5D3C1F4E-2B7A-5E0C-9A41-6F0E8B2D7C13", False),
    ("5d3c1f4e-2b7a-5e0c-9a41-6f0e8b2d7c1_", False), ("+d3c1f4e-2b7a-5e0c-9a41-6f0e8b2d7c13", False),
    ("{5d3c1f4e-2b7a-5e0c-9a41-6f0e8b2d7c1}", False), ("E1", False), ("5d3c1f4e-2b7a-5e0c-9a41-6f0e8b2d7c13#1", False)])
def test_an_id_is_held_as_an_int_only_when_it_is_a_uuid_in_canonical_text(text: str, as_int: bool) -> None:
    assert isinstance(_id_key(text), int) == as_int and _id_text(_id_key(text)) == text


def test_a_record_naming_a_derived_id_finds_that_event() -> None:
    m, changes = run([rec(0, None)])
    derived_id = changes[0].row.event_id
    m, changes = run([rec(1, derived_id, count=2)], m, 1)
    assert [(c.row.event_id, c.row.count) for c in rowed(changes)] == [(derived_id, 3)]
    m, changes = run([rec(2, derived_id.upper(), interval=0)], m, 2)  # another id: a new event under it
    assert [c.row.event_id for c in rowed(changes)] == [derived_id.upper()]


@given(st.lists(st.tuples(st.booleans(), st.integers(-3, 60), st.sampled_from([0, 3, 2**40, -2**63, 2**63 - 1]),
                          st.integers(0, 3)), max_size=300))
def test_the_group_index_is_a_dict(ops: list[tuple[bool, int, int, int, int]]) -> None:
    events: dict[str, bytes] = {}
    table, expected = _Groups(events), {}
    for put, small, big, importance in ops:
        join_key = small + big if -2**63 <= small + big < 2**63 else small
        group = join_key * 4 + importance
        if put:
            event_id = f"e{group}"
            events[event_id] = _HDR.pack(join_key, 0, 0, 0, 1, 1, 0, 0, 0, importance, 0, 0, 0)
            table.put(group, event_id)
            expected[group] = event_id
        elif group in expected:
            table.pop(group)
            del events[expected.pop(group)]
        assert all(table.get(g) == v for g, v in expected.items()) and table.get(group) == expected.get(group)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=300))
def test_the_digest_table_is_a_set(ops: list[tuple[bool, int]]) -> None:
    table, expected = _Digests(), set()
    for add, small in ops:  # few distinct values, all in a few slots: long runs, wrap-around, shifts back
        d = 0 if small == 0 else ((1020 + small % 6) % 1024 << 54) + small + (2**53 if small % 3 == 0 else 0)
        (table.add if add else table.discard)(d)
        (expected.add if add else expected.discard)(d)
        assert all((v in table) == (v in expected) for v in {d, *expected})
    spread = [(d * 0x9E3779B97F4A7C15) % 2**64 for d in range(1, 3000)]  # as digests are
    for d in spread:  # grows past its first size
        table.add(d)
    assert all(d in table for d in spread) and all(v in table for v in expected)


@given(st.lists(st.tuples(st.integers(-3, 60), st.sampled_from([0, 3, 2**40]), st.integers(0, 3)), max_size=400))
def test_a_group_index_filled_at_once_equals_one_grown_event_by_event(events_made: list[tuple[int, int, int]]) -> None:
    events: dict[str, bytes] = {}
    for n, (small, big, importance) in enumerate(events_made):
        events[f"e{n}"] = _HDR.pack(small + big, 0, 0, 0, 1, 1, n, n, 0, importance, 0, 0, 0)
    grown, expected, others = _Groups(events), {}, []
    for event_id, value in events.items():
        join_key, *_, importance = _HDR.unpack_from(value)[:10]
        group = join_key * 4 + importance
        if grown.setdefault(group, event_id) is event_id:
            expected[group] = event_id
        else:
            others.append((event_id, value))
    filled = _Groups(events)
    assert filled.fill() == others  # the events whose group had one already, for the caller to admit
    absent = next(g for g in range(-1000, 1000) if g not in expected)
    assert all(filled.get(g) == v for g, v in expected.items()) and filled.get(absent) is None
    assert (len(filled._hashes), filled._n) == (len(grown._hashes), grown._n)  # as big: the same memory
    assert sorted(zip(filled._hashes, filled._entries), key=str) == sorted(zip(grown._hashes, grown._entries), key=str)


@given(st.lists(st.integers(0, 40), max_size=300), st.lists(st.integers(0, 2**64 - 1), max_size=3000))
def test_a_digest_table_filled_at_once_equals_one_grown_digest_by_digest(few: list[int], many: list[int]) -> None:
    digests = [0 if x == 0 else ((1020 + x % 6) % 1024 << 54) + x for x in few] + many  # long runs, repeats, 0
    grown, filled = _Digests(), _Digests()
    for d in digests:
        grown.add(d)
    filled.fill(array("Q", digests))
    assert (len(filled._slots), filled._n, filled._zero) == (len(grown._slots), grown._n, grown._zero)
    assert sorted(filled._slots) == sorted(grown._slots)
    assert all(d in filled for d in digests) and (0 in filled) == (0 in digests)


def test_a_group_shrunk_to_one_event_and_grown_again_keeps_finding_the_latest() -> None:
    # join_key 0: A (version 1) and B (version 2), interval 0 so B does not join A; A expires first
    m, changes = run([rec(0, None, interval=1, version="1"), rec(1000, None, interval=0, version="2")])
    a, b = (c.row.event_id for c in rowed(changes))
    m, changes = run([rec(3602, None, join_key=9)], m, 2)  # the watermark passes A's expiry, not B's
    assert [c.key for c in changes if c.state is None and c.row is None and "#" not in c.key] == [
        event_key("acc", "comp", "type", a)]
    m, changes = run([rec(3603, None, interval=3000, version="2"),  # joins B, the latest of version 2
                      rec(3604, None, interval=3000, version="1"),  # none of version 1 left: a new event C
                      rec(3605, None, interval=3000),  # no version: the latest overall, C
                      rec(3606, None, interval=3000, version="2")], m, 3)  # B again
    ids = [c.row.event_id for c in rowed(changes)]
    assert ids[0] == b and ids[1] not in (a, b) and ids[2] == ids[1] and ids[3] == b
    copy, tail = JoinWindows(CFG, m.watermark, [s for _, s in m.snapshot()]), [rec(3607, None, interval=3000)]
    assert run(tail, copy, 7)[1] == run(tail, m, 7)[1]


@pytest.mark.parametrize("bad", [{"importance": "Fatal"}, {"count": 0}, {"interval": -1.0},
                                 {"interval": float("nan")}])
def test_invalid_record_is_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        rec(0, **bad)


# --- properties -----------------------------------------------------------------------------------------------------
@st.composite
def record_streams(draw: st.DrawFn, max_s: int = 300) -> list[JoinRecord]:
    n = draw(st.integers(1, 25))
    out = []
    for i in range(n):
        out.append(JoinRecord(
            "acc", f"rec-{i}", draw(st.sampled_from([None, "E1", "E2", "E3"])), "comp",
            draw(st.sampled_from(["t1", "t2"])), draw(st.sampled_from([0, 1])),
            draw(st.integers(0, max_s)) * S + draw(st.sampled_from([0, 1, 999])),
            draw(st.sampled_from([0.0, 0.5, 5.0, 60.0])), draw(st.sampled_from(["Alarm", "Warning"])),
            draw(st.integers(1, 5)), f"m{i}", draw(st.sampled_from([None, None, "1.0", "2.0"]))))
    return out


@dataclass
class _Ev:
    r: JoinRecord
    id: str
    created: int
    start: int
    end: int
    actual: int
    count: int
    message: str
    records: int = 1
    version: str | None = field(default=None)


def reference(records: list[JoinRecord]) -> dict[tuple, tuple]:
    """SPEC §3.2 read literally, one record after the other, over a plain list (no expiry: times within retention)."""
    evs: list[_Ev] = []
    seen: set[str] = set()
    for n, r in enumerate(records):
        if r.record_id in seen:
            continue
        seen.add(r.record_id)
        iv = round(r.join_interval * 1000)

        def same_group(e: _Ev) -> bool:
            return (e.r.account_id, e.r.component_id, e.r.type_id, e.r.importance, e.r.join_key) == (
                r.account_id, r.component_id, r.type_id, r.importance, r.join_key)

        def joinable(e: _Ev) -> bool:
            versions_ok = e.version is None or r.version is None or e.version == r.version
            return same_group(e) and versions_ok and r.join_interval != 0 and e.end + 1000 + iv >= r.start_date

        in_scope = [e for e in evs if (e.r.account_id, e.r.component_id, e.r.type_id) ==
                    (r.account_id, r.component_id, r.type_id)]
        candidate = next((e for e in in_scope if e.id == r.event_id), None)
        if candidate is None or not joinable(candidate):
            pool = [e for e in evs if same_group(e) and (r.version is None or e.version == r.version)]
            candidate = max(pool, key=lambda e: (e.end, e.created)) if pool else None
        if candidate is not None and joinable(candidate):
            candidate.count += r.count
            candidate.end = max(candidate.end, r.start_date)
            candidate.actual = r.start_date + iv
            candidate.message = r.message
            candidate.records += 1
            continue
        used = {e.id for e in in_scope}
        new_id = r.event_id if r.event_id is not None and r.event_id not in used else str(
            uuid.uuid5(JOINED_EVENT_NAMESPACE, r.record_id))
        evs.append(_Ev(r, new_id, n, r.start_date, r.start_date, r.start_date + iv, r.count, r.message,
                       version=r.version))
    return {(e.r.account_id, e.r.component_id, e.r.type_id, e.id): (
        e.r.join_key, e.r.importance, e.start, e.end, e.actual, e.count, e.message, e.version, e.records)
        for e in evs}


def as_reference(rows: dict[tuple, JoinedEventRow]) -> dict[tuple, tuple]:
    return {k: (r.join_key, r.importance, r.start_time, r.end_time, r.actual_time, r.count, r.message, r.version,
                r.records) for k, r in rows.items()}


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(record_streams())
def test_matches_the_literal_reading_of_the_spec(records: list[JoinRecord]) -> None:
    _, changes = run(records)
    assert as_reference(final_rows(changes)) == reference(records)


@PROPS
@given(record_streams(max_s=600), st.lists(st.integers(0, 10_000), max_size=8), st.data())
def test_restore_points_do_not_change_the_result(records: list[JoinRecord], cuts: list[int],
                                                 data: st.DataObject) -> None:
    cfg = JoinConfig(retention_s=60)  # short, so that windows expire in the middle of the stream
    whole, expected = run(records, JoinWindows(cfg))
    m, changes, done = JoinWindows(cfg), [], 0
    for point in sorted({c % (len(records) + 1) for c in cuts}) + [len(records)]:
        for offset in range(done, point):
            changes.extend(m.process(records[offset], offset))
        done = point
        m = JoinWindows(cfg, m.watermark, [s for _, s in m.snapshot()])  # crash and restore here
        for offset in range(data.draw(st.integers(0, point)), point):  # replay from an older offset: a no-op
            assert m.process(records[offset], offset) == []
    assert changes == expected
    assert dict(m.snapshot()) == dict(whole.snapshot())


@PROPS
@given(record_streams(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), max_size=10))
def test_duplicate_deliveries_do_not_change_the_rows(records: list[JoinRecord], dups: list[tuple[int, int]]) -> None:
    with_dups = list(records)
    for which, delay in dups:  # re-deliver a record any time after its first delivery
        i = with_dups.index(records[which % len(records)])
        with_dups.insert(i + 1 + delay % (len(with_dups) - i), records[which % len(records)])
    _, clean = run(records)
    _, dirty = run(with_dups)
    assert final_rows(dirty) == final_rows(clean)
