"""consumers/clickhouse_io.py against the real ClickHouse: state round trip, one atomic part, outage errors."""

from __future__ import annotations

import dataclasses

import pytest

from consumers.clickhouse_io import ClickHouseStore
from consumers.errors import Unavailable
from consumers.processors import SessionsWorker
from consumers.sessions import state_key
from consumers.state import Checkpoint
from eventpipe.settings import Settings


def test_state_round_trips_with_binary_bytes_deletes_and_the_checkpoint(isolated_settings: Settings) -> None:
    store = ClickHouseStore(isolated_settings)
    changes = [(0, f"k{i}", bytes([255, 0, i]), False, i) for i in range(5)] + [(0, "k1", b"", True, 7),
                                                                               (1, "other", b"x", False, 1)]
    store.write_state("g", "t", changes, {0: Checkpoint(1234, 8).encode()}, {0: 8})
    restored = store.load_state("g", "t", 0)
    assert restored.checkpoint == Checkpoint(1234, 8)
    assert sorted(restored) == sorted(bytes([255, 0, i]) for i in (0, 2, 3, 4))
    assert store.load_state("g", "t", 2).checkpoint is None
    parts = store.client.execute("SELECT count() FROM system.parts WHERE database = %(d)s AND table = "
                                 "'consumer_state' AND active", {"d": isolated_settings.clickhouse_database})
    assert parts == [(1,)]  # states and checkpoint landed together


def test_a_newer_version_wins_and_an_older_one_does_not(isolated_settings: Settings) -> None:
    store = ClickHouseStore(isolated_settings)
    store.write_state("g", "t", [(0, "k", b"new", False, 9)], {0: Checkpoint(1, 10).encode()}, {0: 10})
    store.write_state("g", "t", [(0, "k", b"old", False, 3)], {}, {})  # a replay of an older batch
    assert tuple(store.load_state("g", "t", 0)) == (b"new",)


def test_tombstones_are_found_only_where_the_latest_row_is_a_delete_that_kept_its_state(
        isolated_settings: Settings) -> None:
    store = ClickHouseStore(isolated_settings)
    store.write_state("g", "t", [(0, "gone", b"live", False, 1), (0, "gone", b"\x00tomb\xff", True, 5),
                                 (0, "back", b"tomb", True, 2), (0, "back", b"live again", False, 6),
                                 (0, "joins-style", b"", True, 3), (1, "gone", b"other partition", True, 4)],
                      {0: Checkpoint(1, 7).encode()}, {0: 7})
    found = store.load_tombstones("g", "t", {0: ["gone", "back", "joins-style", "never"], 1: ["gone"]}, {})
    assert found == {0: {"gone": b"\x00tomb\xff"}, 1: {"gone": b"other partition"}}
    assert tuple(store.load_state("g", "t", 0)) == (b"live again",)  # a restore never loads a tombstone


def test_keys_seen_at_or_below_the_floor_are_found_by_their_output_row(isolated_settings: Settings) -> None:
    """What a look-up falls back on once compaction dropped a tombstone (state.py): a key's ``sessions`` row
    written at or below the partition's floor, whatever its other rows."""
    store = ClickHouseStore(isolated_settings)
    rows = [("acc", "APPSTART", "old", "timed_out", None, None, None, 0, 7),   # seen below the floor
            ("acc", "APPSTART", "old", "timed_out", None, None, None, 1, 40),  # ... and again later
            ("acc", "APPSTART", "new", "open", None, None, None, 0, 41),       # only above it
            ("acc", "CRASH", "old", "orphan", None, None, None, 0, 3),         # another type
            ("acc", "APPSTART", "é \"q\"", "open", None, None, None, 0, 9)]     # needs escaping in the key
    store.insert("sessions", SessionsWorker.columns, rows)
    keys = [state_key("acc", s, t) for s, t in (("old", "APPSTART"), ("new", "APPSTART"), ("old", "CRASH"),
                                                 ("é \"q\"", "APPSTART"), ("never", "APPSTART"))]
    history = SessionsWorker.history
    seen = store.seen_at_or_below(history, {0: keys, 3: keys[:2]}, {0: 20, 3: 41})
    assert {p: sorted(k) for p, k in seen.items()} == {0: sorted([keys[0], keys[2], keys[3]]), 3: sorted(keys[:2])}
    assert store.seen_at_or_below(history, {0: [keys[0]]}, {0: 6}) == {0: []}
    assert store.seen_at_or_below(history, {0: [keys[0]]}, {0: 7}) == {0: [keys[0]]}  # "at or below"


def test_an_unreachable_server_is_unavailable_not_a_crash(isolated_settings: Settings) -> None:
    store = ClickHouseStore(dataclasses.replace(isolated_settings, clickhouse_port=1))
    with pytest.raises(Unavailable):
        store.insert("events", ("account_id",), [("a",)])
    with pytest.raises(Unavailable):
        store.load_state("g", "t", 0)
    with pytest.raises(Unavailable):
        store.load_tombstones("g", "t", {0: ["k"]}, {})


def test_a_row_that_does_not_fit_is_a_bug_and_raises(isolated_settings: Settings) -> None:
    store = ClickHouseStore(isolated_settings)
    with pytest.raises(Exception) as info:
        store.insert("consumer_state", ("consumer_group", "version"), [("g", "not a number")])
    assert not isinstance(info.value, Unavailable)


def test_a_missing_table_is_transient_and_named(isolated_settings: Settings) -> None:
    """Workers started before the migrations ran wait for them instead of crashing."""
    with pytest.raises(Unavailable, match="no_such_table"):
        ClickHouseStore(isolated_settings).insert("no_such_table", ("x",), [(1,)])
