"""Sessions longer than timeout + grace (issue 15), against the real Kafka and ClickHouse: an app left in the
background for a day and a half while other devices keep sending in real time. Its END arrives after the key
left memory; the row must stay ``timed_out`` with its ``start_time`` (never an ``orphan``), across a kill -9."""

from __future__ import annotations

import dataclasses
import random
import signal
import time

from consumers.state import Checkpoint
from deploy.migrate import client
from eventpipe.settings import Settings

from .conftest import Workers, wait_until
from .streams import Producer, event, reference_rows, final_rows

T0 = 1_700_000_000
HOUR = 3600


def scenario(rng: random.Random) -> tuple[list[dict], dict[str, tuple]]:
    """Events in real-time order, and the final (status, start, end, duration, updates) expected per session."""
    timed: list[tuple[int, dict]] = []
    expected: dict[str, tuple] = {}
    for i in range(24):
        session, start = f"long{i:04d}xx", T0 + i * 300
        timed.append((start, event("demo", "START", start, session)))
        kind = i % 4
        if kind == 0:    # END 26–36 h after its START
            end = start + (26 + i % 10) * HOUR
            timed.append((end, event("demo", "END", end, session)))
            expected[session] = ("timed_out", start, end, end - start, 0)
        elif kind == 1:  # UPDATE after a two-day gap, then END
            update, end = start + 48 * HOUR, start + 49 * HOUR
            timed += [(update, event("demo", "UPDATE", update, session)), (end, event("demo", "END", end, session))]
            expected[session] = ("timed_out", start, end, end - start, 1)
        elif kind == 2:  # START only: times out, never ends
            expected[session] = ("timed_out", start, None, None, 0)
        else:            # an ordinary session
            end = start + 600
            timed.append((end, event("demo", "END", end, session)))
            expected[session] = ("closed", start, end, 600, 0)
    for t in range(T0, T0 + 52 * HOUR, 90):  # the other devices, every 90 s of event time, all partitions
        timed.append((t, event("demo", "START", t, f"dev{t:011d}")))
    timed.sort(key=lambda pair: pair[0])
    return [e for _, e in timed], expected


def test_sessions_longer_than_timeout_plus_grace_keep_their_start(isolated_settings: Settings,
                                                                  workers: Workers) -> None:
    s = isolated_settings
    events, expected = scenario(random.Random(15))
    producer = Producer(s)
    half = len(events) // 2
    producer.events(events[:half])
    proc = workers.start("sessions", batch_rows=40)
    db = client(s, s.clickhouse_database)
    wait_until(lambda: db.execute("SELECT count() FROM consumer_state WHERE deleted = 1 AND state != ''")[0][0] > 0,
               what="tombstones of evicted sessions in consumer_state", workers=workers)
    assert workers.kill(proc, signal.SIGKILL) == -signal.SIGKILL
    producer.events(events[half:])
    producer.close()
    workers.start("sessions", batch_rows=40)

    def rows() -> dict[str, tuple]:
        return {r[0]: tuple(r[1:]) for r in db.execute(
            "SELECT session, toString(status), toUnixTimestamp(start_time), toUnixTimestamp(end_time), duration_s, "
            "update_count FROM sessions_final WHERE session LIKE 'long%'")}

    got = wait_until(lambda: (r := rows()) == expected and r, timeout_s=120,
                     what="every long session with its START", workers=workers)
    assert not [k for k, v in got.items() if v[0] == "orphan"]
    expected_all = reference_rows(s, "sessions")  # one uninterrupted pass: the same rows, versions included
    deadline = time.monotonic() + 60
    while final_rows(db, "sessions") != expected_all and time.monotonic() < deadline:
        time.sleep(0.5)
    assert final_rows(db, "sessions") == expected_all


def test_compaction_forgets_tombstones_past_the_horizon_and_their_sessions_keep_their_start(
        isolated_settings: Settings, workers: Workers) -> None:
    """Issue 10 §2 for the sessions worker: compaction drops the tombstones no event that is not too late can
    join, so ``consumer_state`` does not keep a row per session that ever left memory — and an UPDATE for such
    a session, beyond the horizon but not too late, still finds out (from ``sessions``) that its START was seen:
    its row stays ``timed_out``, never an ``orphan``. Short timeout, grace and horizon (R = 660 s, H = 600 s),
    frequent compactions, and a kill -9 in the middle."""
    short = {"session_timeout_s": 600, "orphan_grace_s": 60, "session_late_horizon_s": 600,
             "state_compact_min_rows": 10, "batch_rows": 40}
    s = dataclasses.replace(isolated_settings, **short)
    timed: list[tuple[int, dict]] = []
    expected: dict[str, tuple] = {}
    for i in range(12):
        session, start = f"fgt{i:04d}xx", T0 + 200 * i
        timed.append((start, event("demo", "START", start, session)))
        if i % 2:  # an UPDATE 3 600 s after its START (beyond the horizon), arriving 560 s late (retention: 660)
            timed.append((start + 3600 + 560, event("demo", "UPDATE", start + 3600, session)))
        else:      # an UPDATE 500 s after its START (within the horizon), arriving after the key left memory
            timed.append((start + 1000, event("demo", "UPDATE", start + 500, session)))
        expected[session] = ("timed_out", start, None, None, 0 if i % 2 else 1)
    for t in range(T0, T0 + 3 * HOUR, 10):  # the other devices move the watermark
        timed.append((t, event("demo", "START", t, f"dev{t:011d}")))
    timed.sort(key=lambda pair: pair[0])
    events = [e for _, e in timed]
    producer = Producer(s)
    half = len(events) // 2
    producer.events(events[:half])
    proc = workers.start("sessions", **short)
    db = client(s, s.clickhouse_database)
    wait_until(lambda: db.execute("SELECT count() FROM consumer_state WHERE key = '' AND "
                                  "visitParamExtractUInt(state, 'floor') > 0")[0][0] > 0,
               what="a compacted partition", workers=workers)
    assert workers.kill(proc, signal.SIGKILL) == -signal.SIGKILL
    producer.events(events[half:])
    producer.close()
    workers.start("sessions", **short)

    def rows() -> dict[str, tuple]:
        return {r[0]: tuple(r[1:]) for r in db.execute(
            "SELECT session, toString(status), toUnixTimestamp(start_time), toUnixTimestamp(end_time), duration_s, "
            "update_count FROM sessions_final WHERE session LIKE 'fgt%'")}

    wait_until(lambda: rows() == expected, timeout_s=120, what="every session with its START", workers=workers)
    expected_all = reference_rows(s, "sessions")  # one uninterrupted pass: the same rows, versions included
    wait_until(lambda: final_rows(db, "sessions") == expected_all, timeout_s=60, what="the reference rows",
               workers=workers)
    # the tombstones a restore or look-up can read: far fewer than the sessions that left memory
    floors: dict[int, int] = {}
    for partition, raw in db.execute("SELECT partition, state FROM consumer_state WHERE key = ''"):
        floors[partition] = max(floors.get(partition, 0), Checkpoint.decode(raw).floor)
    latest = db.execute("SELECT partition, key, argMax(deleted, version), argMax(state, version) != '', "
                        "max(version) FROM consumer_state WHERE key != '' GROUP BY partition, key")
    readable = sum(1 for p, _, deleted, kept, version in latest if deleted and kept and version >= floors.get(p, 0))
    evicted = sum(1 for r in expected_all if r[3] in ("timed_out", "closed"))
    assert evicted > 600 and readable < evicted // 3, (readable, evicted)
