"""Sessions longer than timeout + grace (issue 15), against the real Kafka and ClickHouse: an app left in the
background for a day and a half while other devices keep sending in real time. Its END arrives after the key
left memory; the row must stay ``timed_out`` with its ``start_time`` (never an ``orphan``), across a kill -9."""

from __future__ import annotations

import random
import signal
import time

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
