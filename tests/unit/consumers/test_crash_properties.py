"""Property: whatever the batch size and wherever the worker dies — between batches, after the rows but before
the state, after the state but before the commit, in the middle of a compaction (snapshot written, floor not) — a
restarted worker ends with the same ``sessions`` rows as one uninterrupted pass (the state mechanism of
consumers/state.py, with in-memory Kafka and ClickHouse), whether it compacts its state never or all the time."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from consumers.processors import JoinsWorker, Message, SessionsWorker
from consumers.state import Restored
from consumers.worker import Worker
from eventpipe.settings import Settings

from .fakes import FakeClock, FakePublisher, FakeSource, FakeStore, event_bytes
from .test_processors import join_bytes


class Crash(Exception):
    """The process dies here (kill -9): nothing after this point happens."""


class CrashingStore(FakeStore):
    crash_before_state = False
    crash_mid_compaction = False

    def write_state(self, *args, **kwargs) -> float:
        if self.crash_before_state:
            self.crash_before_state = False
            raise Crash
        return super().write_state(*args, **kwargs)

    def compact(self, group, topic, partition, live, tombstones, checkpoint) -> int:
        if self.crash_mid_compaction:  # the snapshot's rows landed, its checkpoint (the floor) did not
            self.crash_mid_compaction = False
            v = checkpoint.floor
            self.state_rows += [(group, topic, partition, k, s, v, 0) for k, s in live]
            self.state_rows += [(group, topic, partition, k, s, v, 1) for k, s in tombstones]
            raise Crash
        return super().compact(group, topic, partition, live, tombstones, checkpoint)


class CrashingSource(FakeSource):
    crash_before_commit = False

    def commit(self, offsets) -> None:
        if self.crash_before_commit:
            self.crash_before_commit = False
            raise Crash
        super().commit(offsets)


BASE = 1365772427
events = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["START", "UPDATE", "END"]),
                            st.integers(0, 300), st.integers(0, 5)), min_size=1, max_size=40)
crashes = st.lists(st.tuples(st.integers(1, 12), st.sampled_from(["between", "before_state", "before_commit",
                                                                 "mid_compaction"])), max_size=4)
compaction = st.sampled_from([100_000, 1, 4])  # compact_min_rows: never (small streams), often, sometimes


def reference(settings: Settings, worker_cls, source: FakeSource, table_key: int, version_index: int) -> dict:
    processor = worker_cls(settings)
    final: dict = {}
    for p in sorted(source.log):
        processor.assign(p, Restored(None, ()))
        for offset, value in enumerate(source.log[p]):
            message = Message(source.topic, p, offset, 0, value)
            # one uninterrupted pass persists nothing: every tombstone is still in memory, a look-up finds none
            for partition, keys in processor.prepare([message]).items():
                processor.recall(partition, keys, [])
            for identity, row in processor.handle(message).rows:
                final[row[:table_key]] = row
    return final


def run_with_crashes(settings: Settings, worker_cls, source: CrashingSource, store: CrashingStore,
                     schedule: list[tuple[int, str]], compact_min_rows: int) -> None:
    publisher = FakePublisher([])
    crash_at = dict(schedule)

    def new_worker() -> Worker:
        worker = Worker(dataclasses.replace(settings, state_compact_min_rows=compact_min_rows),
                        worker_cls(settings), store, publisher, clock=FakeClock(), source_factory=source.factory)
        worker.source = worker.connect()
        source.rebalance(sorted(source.log))
        return worker

    worker = new_worker()
    for step in range(200):
        kind = crash_at.get(step)
        if kind == "between":
            worker = new_worker()  # the old one vanished with its unwritten batch
            continue
        store.crash_before_state = kind == "before_state"
        source.crash_before_commit = kind == "before_commit"
        store.crash_mid_compaction = kind == "mid_compaction"
        try:
            worker.step()
        except Crash:
            worker = new_worker()
        worker.clock.sleep(0.6)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events, batch_rows=st.integers(1, 8), schedule=crashes, compact_min_rows=compaction)
def test_sessions_survive_crashes_anywhere(events, batch_rows, schedule, compact_min_rows) -> None:
    settings = Settings.from_env({}, batch_rows=batch_rows, batch_seconds=1.0, topic_prefix="t")
    source, store = CrashingSource(settings.topic_events, []), CrashingStore([])
    for s, action, dt, eid in events:
        # a session's events share a partition, as the gateway's key (account, session, type) makes them
        source.produce(s % 2, event_bytes(action, BASE + dt, session=f"session{s}x", event_id=f"{action}{s}-{eid}"))
    run_with_crashes(settings, SessionsWorker, source, store, schedule, compact_min_rows)
    assert store.final("sessions", 3, 8) == reference(settings, SessionsWorker, source, 3, 8)


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["START", "UPDATE", "END"]),
                                 st.integers(0, 2_000), st.integers(0, 5)), min_size=1, max_size=40),
       batch_rows=st.integers(1, 8), schedule=crashes, compact_min_rows=compaction,
       horizon=st.sampled_from([600, 60]))
def test_sessions_that_outlive_memory_survive_crashes_anywhere(events, batch_rows, schedule, compact_min_rows,
                                                               horizon) -> None:
    """Short timeout, grace and horizon: keys are evicted, recalled from their tombstones by late UPDATEs/ENDs,
    or beyond the horizon ignored — across crashes and restores, with look-ups against the store; with the short
    horizon, compaction drops tombstones often and look-ups fall back on ``sessions``."""
    settings = Settings.from_env({}, batch_rows=batch_rows, batch_seconds=1.0, topic_prefix="t",
                                 session_timeout_s=100, orphan_grace_s=20, session_late_horizon_s=horizon)
    source, store = CrashingSource(settings.topic_events, []), CrashingStore([])
    for s, action, dt, eid in sorted(events, key=lambda e: e[2] // 50):  # roughly in time, shuffled within 50 s
        source.produce(s % 2, event_bytes(action, BASE + dt, session=f"session{s}x", event_id=f"{action}{s}-{eid}"))
    run_with_crashes(settings, SessionsWorker, source, store, schedule, compact_min_rows)
    assert store.final("sessions", 3, 8) == reference(settings, SessionsWorker, source, 3, 8)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.tuples(st.integers(0, 600_000), st.integers(1, 3),
                                  st.integers(0, 6)), min_size=1, max_size=30),
       batch_rows=st.integers(1, 8), schedule=crashes, compact_min_rows=compaction)
def test_join_windows_survive_crashes_anywhere(records, batch_rows, schedule, compact_min_rows) -> None:
    settings = Settings.from_env({}, batch_rows=batch_rows, batch_seconds=1.0, topic_prefix="t")
    source, store = CrashingSource(settings.topic_joins, []), CrashingStore([])
    t0 = 1_462_058_743_511
    for dt, count, rid in records:  # one (account, component, type): one partition
        source.produce(0, join_bytes(t0 + dt, count=count, record_id=f"r{rid}", event_id=None))
    run_with_crashes(settings, JoinsWorker, source, store, schedule, compact_min_rows)
    key = 4  # account, event_id, component_id, type_id
    assert store.final("joined_events", key, 16) == reference(settings, JoinsWorker, source, key, 16)


def test_compaction_keeps_the_tombstones_a_late_event_can_still_reach_and_drops_the_others() -> None:
    """Session 1 is evicted (timed out) while the stream goes on, the state is compacted after (nearly) every
    batch, then a late END of it within the horizon comes: it must meet its tombstone (timed_out with its end
    shown), not start an orphan. Session 4's tombstone stays (the watermark is not yet horizon + retention past
    its START); session 0's goes (it is), and the look-ups that find no tombstone ask ``sessions``."""
    settings = Settings.from_env({}, batch_rows=1, batch_seconds=1.0, topic_prefix="t", session_timeout_s=100,
                                 orphan_grace_s=20, session_late_horizon_s=600)
    source, store = CrashingSource(settings.topic_events, []), CrashingStore([])
    stream = [("START", 0, "session0x"), ("START", 10, "session1x"), ("START", 200, "session2x"),
              ("END", 150, "session1x"), ("START", 850, "session4x"), ("START", 1000, "session5x"),
              ("UPDATE", 1001, "session5x"), ("UPDATE", 1002, "session5x"), ("UPDATE", 1003, "session5x")]
    for action, dt, session in stream:
        source.produce(0, event_bytes(action, BASE + dt, session=session, event_id=f"{action}-{session}"))
    run_with_crashes(settings, SessionsWorker, source, store, [], compact_min_rows=1)
    final = store.final("sessions", 3, 8)
    assert final == reference(settings, SessionsWorker, source, 3, 8)
    assert [r[3:6] for r in final.values() if r[2] == "session1x"] == [("timed_out", BASE + 10, BASE + 150)]
    floor = store.load_state("t.sessions", settings.topic_events, 0).checkpoint.floor
    tombstones = {k for k, r in FakeStore._latest(store, "t.sessions", settings.topic_events, 0, floor).items()
                  if r[6] == 1 and r[4]}
    assert any("session4x" in k for k in tombstones) and not any("session0x" in k for k in tombstones)


def test_an_update_for_a_session_whose_tombstone_compaction_dropped_is_ignored() -> None:
    """Found by the property above (seed 2), shrunk: session 2 starts and is evicted (timed_out) when session 0
    starts at last + horizon + retention; UPDATEs of session 0 give more compactions, which drop session 2's
    tombstone (nothing not too late can join it any more). Then an UPDATE of session 2 comes, beyond the horizon
    but not late (ts + retention > watermark). Its look-up finds no tombstone; the ``sessions`` row written below
    the floor says the key was seen, so the UPDATE is ignored and the row stays timed_out with its START. Before
    the look-up asked ``sessions``, the UPDATE started a new key: an orphan row replacing the timed_out one (SPEC
    §3.1: a session whose START was seen is never an orphan)."""
    settings = Settings.from_env({}, batch_rows=1, batch_seconds=1.0, topic_prefix="t", session_timeout_s=100,
                                 orphan_grace_s=20, session_late_horizon_s=600)
    journal: list = []
    source, store = CrashingSource(settings.topic_events, []), CrashingStore(journal)
    stream = [("START", 0, "session2x"), ("START", 720, "session0x")]
    stream += [("UPDATE", 720 + i, "session0x") for i in range(1, 5)] + [("UPDATE", 700, "session2x")]
    for action, dt, session in stream:
        source.produce(0, event_bytes(action, BASE + dt, session=session, event_id=f"{action}-{session}-{dt}"))
    run_with_crashes(settings, SessionsWorker, source, store, [], compact_min_rows=1)
    floor = store.load_state("t.sessions", settings.topic_events, 0).checkpoint.floor
    assert floor > 1  # the compactions ran past the eviction (offset 1)
    assert not [k for k, r in FakeStore._latest(store, "t.sessions", settings.topic_events, 0, floor).items()
                if "session2x" in k]  # its tombstone is gone
    assert ("history", 1) in journal  # ... so the look-up asked sessions
    final = store.final("sessions", 3, 8)
    assert final == reference(settings, SessionsWorker, source, 3, 8)
    assert [r[3:6] for r in final.values() if r[2] == "session2x"] == [("timed_out", BASE, None)]
