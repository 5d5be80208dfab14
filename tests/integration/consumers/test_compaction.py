"""Compaction of ``consumer_state`` on the real ClickHouse (issue 10 §2; design in consumers/state.py): the rows a
restore reads stay flat while millions of keys come and go, and a stale writer's rows below the floor — or
rows an unfinished delete left behind — are never read."""

from __future__ import annotations

import time

from deploy.migrate import client
from eventpipe.settings import Settings

from consumers.clickhouse_io import ClickHouseStore
from consumers.state import Checkpoint

ROUNDS, KEYS, LIVE = 4, 500_000, 1_000  # 2 M keys come and go; 1 000 stay
GRANULE = 8192  # index_granularity of consumer_state (the default)


def _mutations_done(settings: Settings) -> None:
    db = client(settings, settings.clickhouse_database)
    deadline = time.monotonic() + 300
    while db.execute("SELECT count() FROM system.mutations WHERE database = %(d)s AND table = 'consumer_state' "
                     "AND is_done = 0", {"d": settings.clickhouse_database})[0][0]:
        assert time.monotonic() < deadline, "ClickHouse did not finish the deletes in 300 s"
        time.sleep(0.5)


def test_restore_reads_stay_flat_while_millions_of_keys_come_and_go(isolated_settings: Settings) -> None:
    s = isolated_settings
    store = ClickHouseStore(s)
    g, t = "g", "topic"
    live = [(f"live{i:06d}", b"state-%d" % i) for i in range(LIVE)]
    offset, reads = 0, {"compacted": [], "never compacted": []}
    for r in range(ROUNDS):
        # keys come (one offset each) and go (evicted, no tombstone) on partition 0 (compacted) and 1 (never)
        for p in (0, 1):
            born = [(p, f"r{r}k{i:07d}", b"x" * 40, False, offset + i) for i in range(KEYS)]
            store.write_state(g, t, born + [(p, key, b"", True, offset + KEYS + i) for i, (_, key, *_) in
                                            enumerate(born)], {}, {})
            store.write_state(g, t, [(p, key, state, False, offset + 2 * KEYS) for key, state in live],
                              {p: Checkpoint(7, offset + 2 * KEYS + 1).encode()}, {p: offset + 2 * KEYS + 1})
        offset += 2 * KEYS + 1
        floor = store.load_state(g, t, 0).checkpoint.floor
        store.compact(g, t, 0, live, [], Checkpoint(7, offset, offset - 1))
        assert store.load_state(g, t, 0).checkpoint.floor == offset - 1 > floor
        _mutations_done(s)
        for p, label in ((0, "compacted"), (1, "never compacted")):
            restored = store.load_state(g, t, p)
            assert sorted(restored) == sorted(state for _, state in live)  # exact either way
            assert restored.checkpoint == Checkpoint(7, offset, offset - 1 if p == 0 else 0)
            reads[label].append(restored.rows_read)
    # flat: the compacted partition reads its live rows and a few index granules of its neighbours (ClickHouse
    # reads whole granules of GRANULE rows), whatever came and went before
    assert all(n <= 2 * LIVE + 4 * GRANULE for n in reads["compacted"]), reads
    # the control grows with every round, by a row per key ever seen once merges collapsed a key's rows (what
    # every partition did before compaction)
    assert reads["never compacted"][-1] >= ROUNDS * KEYS, reads


def test_rows_below_the_floor_are_never_read_even_when_a_stale_writer_adds_them(isolated_settings: Settings) -> None:
    s = isolated_settings
    store = ClickHouseStore(s)
    g, t = "g", "topic"
    store.write_state(g, t, [(0, "k", b"old", False, 5), (0, "gone", b"tomb", True, 6)],
                      {0: Checkpoint(1, 10).encode()}, {0: 10})
    store.compact(g, t, 0, [("k", b"new")], [], Checkpoint(2, 20, 19))
    # a writer that stalled before the compaction wakes up: an older state of k, an older checkpoint, and a key
    # the compaction dropped, all below the floor
    store.write_state(g, t, [(0, "k", b"stale", False, 15), (0, "gone", b"back from the dead", False, 16)],
                      {0: Checkpoint(1, 17).encode()}, {0: 17})
    restored = store.load_state(g, t, 0)
    assert tuple(restored) == (b"new",) and restored.checkpoint == Checkpoint(2, 20, 19)
    assert store.load_tombstones(g, t, {0: ["gone"]}, {0: 19}) == {0: {}}
